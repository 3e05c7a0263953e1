//! Compatibility routes: clients of the systems Atelier replaces switch by changing only their base URL.
//! Each family answers in its own documented shapes, state names and error codes; Atelier codes are
//! mapped to the family's codes in its module (the tables are in the module docs).
//!
//! Every family authenticates like the rest of the gateway: `Authorization: Bearer <api key>` and
//! `X-Atelier-Account` naming the end user when the key is tenant-wide; and, when the operator
//! configures it, with the bearer JWTs the old systems issued (see [`jwt`]).

pub mod error;
pub mod generator;
pub mod image_edit;
pub mod image_editor;
pub mod image_studio;
pub mod jwt;
pub mod task_api;

use atelier_proto::v1 as pb;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::call::Caller;
use crate::error::ApiError;
use crate::routes::uploads::{multipart_error, upload_part};
use crate::state::AppState;

/// At most this many jobs are scanned to answer a listing that needs a total or an offset.
pub const MAX_SCAN: usize = 5_000;

/// Every job matching the filters, newest first, up to [`MAX_SCAN`].
pub async fn list_all(
    state: &AppState,
    caller: &Caller,
    filter: pb::ListJobsRequest,
) -> Result<Vec<pb::Job>, ApiError> {
    let mut jobs = Vec::new();
    let mut token = String::new();
    loop {
        let request = pb::ListJobsRequest {
            page_size: 100,
            page_token: token,
            ..filter.clone()
        };
        let page = state
            .jobs
            .clone()
            .list_jobs(caller.request(request))
            .await?
            .into_inner();
        jobs.extend(page.jobs);
        if page.next_page_token.is_empty() || jobs.len() >= MAX_SCAN {
            jobs.truncate(MAX_SCAN);
            return Ok(jobs);
        }
        token = page.next_page_token;
    }
}

/// Output URLs of every task, in task order.
pub fn output_urls(job: &pb::Job) -> Vec<String> {
    job.tasks
        .iter()
        .flat_map(|t| t.outputs.iter().map(|o| o.url.clone()))
        .collect()
}

/// The first failure among the tasks.
pub fn first_failure(job: &pb::Job) -> Option<&pb::Failure> {
    job.tasks.iter().find_map(|t| t.failure.as_ref())
}

/// Largest result read to inline it in an answer.
const MAX_INLINE_BYTES: u64 = 64 * 1024 * 1024;

/// The bytes of a result, for families that answered with the image itself: read from the storage
/// folder this gateway serves `/v1/files/` from, else fetched from the output's link (an S3
/// presigned URL minted by the orchestrator, never a URL a client chose).
pub async fn output_bytes(state: &AppState, output: &pb::Output) -> Result<bytes::Bytes, ApiError> {
    let unreadable = |why: String| {
        tracing::warn!(key = %output.key, error = %why, "reading a result for an answer failed");
        ApiError::new(
            atelier_codes::ErrorCode::StorageFailed,
            "the result could not be read from storage; ask again, or ask for its link",
        )
    };
    if let Some(files) = &state.files {
        return files
            .storage
            .get(&output.key, MAX_INLINE_BYTES)
            .await
            .map_err(|e| unreadable(e.to_string()));
    }
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    });
    let mut response = client
        .get(&output.url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| unreadable(e.to_string()))?;
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| unreadable(e.to_string()))?
    {
        if (body.len() + chunk.len()) as u64 > MAX_INLINE_BYTES {
            return Err(unreadable("larger than the inline cap".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Whether the job is queued or running.
pub fn is_active(job: &pb::Job) -> bool {
    job.state == pb::JobState::Queued as i32 || job.state == pb::JobState::Running as i32
}

/// A body in any encoding an old web form or client sends: JSON, an urlencoded form, or a
/// multipart form whose text fields are read as strings and whose file parts are streamed into
/// uploads (the field then reads `upload:<id>`). JSON and urlencoded bodies keep the JSON limit;
/// a multipart body is capped per file, as uploads are.
pub async fn form_or_json<T: DeserializeOwned>(
    state: &AppState,
    caller: &Caller,
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
    state: &AppState,
    caller: &Caller,
    request: Request,
) -> Result<T, ApiError> {
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
