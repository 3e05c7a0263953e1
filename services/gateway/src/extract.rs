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
