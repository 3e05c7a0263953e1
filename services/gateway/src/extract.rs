//! Extractors whose rejections answer in the caller's error format: `/v1` JSON errors by default, the
//! compatibility families' own shapes when they ask for theirs.

use std::marker::PhantomData;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body; a malformed one is a 1003 (400) in the error format `E`.
pub struct JsonBody<T, E = ApiError>(pub T, pub PhantomData<E>);

/// A query string; a malformed one is a 1003 (400) in the error format `E`.
pub struct QueryParams<T, E = ApiError>(pub T, pub PhantomData<E>);

/// A path segment; one that does not decode is a 1003 (400) in the error format `E`.
pub struct PathParam<T, E = ApiError>(pub T, pub PhantomData<E>);

fn json_message(rejection: &JsonRejection) -> String {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => {
            "send the body as JSON with `Content-Type: application/json`".to_string()
        }
        JsonRejection::BytesRejection(_) => format!(
            "the request body could not be read: {}",
            rejection.body_text()
        ),
        _ => format!(
            "the body is not valid JSON for this call: {}",
            rejection.body_text()
        ),
    }
}

impl<S, T, E> FromRequest<S> for JsonBody<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned,
    E: From<ApiError> + IntoResponse,
{
    type Rejection = E;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value, PhantomData)),
            Err(rejection) => Err(E::from(ApiError::bad_request(json_message(&rejection)))),
        }
    }
}

impl<S, T, E> FromRequestParts<S> for QueryParams<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned,
    E: From<ApiError> + IntoResponse,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value, PhantomData)),
            Err(rejection) => Err(E::from(query_error(&rejection))),
        }
    }
}

fn query_error(rejection: &QueryRejection) -> ApiError {
    ApiError::bad_request(format!("bad query string: {}", rejection.body_text()))
}

impl<S, T, E> FromRequestParts<S> for PathParam<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
    E: From<ApiError> + IntoResponse,
{
    type Rejection = E;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value, PhantomData)),
            Err(rejection) => Err(E::from(path_error(&rejection))),
        }
    }
}

fn path_error(rejection: &PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {}", rejection.body_text()))
}

/// A body in any encoding an old web form or client sends: JSON, an urlencoded form, or a
/// multipart form whose text fields are read as strings and whose file parts are streamed into
/// uploads (the field then reads `upload:<id>`). JSON and urlencoded bodies keep the JSON limit;
/// a multipart body is capped per file, as uploads are.
pub async fn form_or_json<T: DeserializeOwned>(
    state: &crate::routes::AppState,
    caller: &crate::call::Caller,
    request: Request,
) -> Result<T, ApiError> {
    use axum::http::header::CONTENT_TYPE;
    let content_type = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        return multipart_fields(state, caller, request).await;
    }
    let limit = state.limits.max_json_bytes;
    let bytes = axum::body::to_bytes(request.into_body(), limit)
        .await
        .map_err(|_| {
            ApiError::bad_request(format!(
                "the request body could not be read: it is larger than {limit} bytes or broke off"
            ))
        })?;
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| ApiError::bad_request(format!("the form does not fit this call: {e}")));
    }
    if !content_type.starts_with("application/json") {
        return Err(ApiError::bad_request(
            "send JSON (`Content-Type: application/json`), an urlencoded form or a multipart form",
        ));
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!("the body is not valid JSON for this call: {e}"))
    })
}

async fn multipart_fields<T: DeserializeOwned>(
    state: &crate::routes::AppState,
    caller: &crate::call::Caller,
    request: Request,
) -> Result<T, ApiError> {
    use crate::routes::uploads::{multipart_error, upload_part};
    let mut form = axum::extract::Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::bad_request(format!("bad multipart body: {}", e.body_text())))?;
    let mut fields = serde_json::Map::new();
    let mut text_bytes = 0usize;
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or_default().to_string();
        let value = if field.file_name().is_some() {
            format!("upload:{}", upload_part(state, caller, field).await?.id)
        } else {
            let text = field.text().await.map_err(multipart_error)?;
            text_bytes = text_bytes.saturating_add(text.len());
            if text_bytes > state.limits.max_json_bytes {
                return Err(ApiError::bad_request(format!(
                    "the form's text fields are larger than {} bytes",
                    state.limits.max_json_bytes
                )));
            }
            text
        };
        fields.insert(name, serde_json::Value::String(value));
    }
    serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| ApiError::bad_request(format!("the form does not fit this call: {e}")))
}
