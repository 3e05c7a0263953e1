//! `POST /v1/uploads`: a multipart form (the first file field) or a raw body, streamed chunk by chunk into
//! the orchestrator's `UploadSource` client stream. The size cap is counted while the bytes arrive; past
//! it the caller gets 413/3008 at once. A stream the gateway did not finish (cap passed, body broken,
//! client gone) ends with a poison message (a second metadata) instead of a clean end, so the
//! orchestrator refuses it whatever the order in which connections are torn down.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use atelier_codes::ErrorCode;
use atelier_proto::v1 as pb;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use pb::upload_source_request::Part;
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::{IntoParams, ToSchema};

use crate::call::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryParams;
use crate::model::other::Upload;
use crate::state::AppState;

/// Bytes per `chunk` message.
const CHUNK: usize = 64 * 1024;
/// How long an oversized body is still read (and dropped) so the 413 reaches a client that keeps writing.
const DRAIN_FOR: Duration = Duration::from_secs(5);

/// Query of a raw-body upload.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadQuery {
    /// The file name to keep with a raw-body upload.
    pub filename: Option<String>,
}

/// A multipart upload: the first part with a file name (or named `file`) is the image.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    #[schema(content_media_type = "application/octet-stream")]
    file: Vec<u8>,
}

/// Upload a source image (JPEG, PNG or WebP, at most 10 MiB).
#[utoipa::path(
    post,
    path = "/v1/uploads",
    operation_id = "uploadSource",
    tag = "uploads",
    params(
        UploadQuery,
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    request_body(
        description = "A multipart form with a `file` part, or the image itself as the body",
        content(
            (inline(UploadForm) = "multipart/form-data"),
            (Vec<u8> = "application/octet-stream"),
            (Vec<u8> = "image/jpeg"),
            (Vec<u8> = "image/png"),
            (Vec<u8> = "image/webp"),
        )
    ),
    responses(
        (status = 200, description = "The stored upload", body = Upload),
        (status = 413, description = "Larger than the cap (3008)", body = crate::error::ErrorBody),
        (status = "default", description = "An error", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<UploadQuery>,
    request: Request,
) -> ApiResult<Json<Upload>> {
    let cap = state.limits.max_upload_bytes;
    let content_type = header_text(request.headers(), header::CONTENT_TYPE);
    if content_type
        .as_deref()
        .is_some_and(|c| c.to_ascii_lowercase().starts_with("multipart/form-data"))
    {
        let mut multipart = Multipart::from_request(request, &state)
            .await
            .map_err(|e| ApiError::bad_request(format!("bad multipart body: {}", e.body_text())))?;
        while let Some(field) = multipart.next_field().await.map_err(multipart_error)? {
            let is_file = field.file_name().is_some() || field.name() == Some("file");
            if !is_file {
                continue;
            }
            let upload = upload_part(&state, &caller, field).await?;
            return Ok(Json(Upload::from(&upload)));
        }
        return Err(ApiError::field("file", "the form has no file part"));
    }
    let metadata = pb::UploadMetadata {
        filename: query.filename.unwrap_or_default(),
        content_type: content_type
            .filter(|c| c.starts_with("image/"))
            .unwrap_or_default(),
        size: 0,
    };
    let chunks = request
        .into_body()
        .into_data_stream()
        .map(|c| c.map_err(|e| ApiError::bad_request(format!("the upload body broke off: {e}"))));
    let upload = stream_upload(&state, &caller, metadata, chunks, cap).await?;
    Ok(Json(Upload::from(&upload)))
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Streams one multipart file part into an upload, capped like any upload.
pub(crate) async fn upload_part(
    state: &AppState,
    caller: &Caller,
    field: axum::extract::multipart::Field<'_>,
) -> ApiResult<pb::Upload> {
    let metadata = pb::UploadMetadata {
        filename: field.file_name().unwrap_or_default().to_string(),
        content_type: field.content_type().unwrap_or_default().to_string(),
        // A multipart part has no length up front; an unfinished stream is refused by the
        // poison message instead.
        size: 0,
    };
    let chunks = field.map(|c| c.map_err(multipart_error));
    stream_upload(
        state,
        caller,
        metadata,
        chunks,
        state.limits.max_upload_bytes,
    )
    .await
}

pub(crate) fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(format!("bad multipart body: {}", e.body_text()))
}

fn too_large(cap: u64) -> ApiError {
    ApiError::new(
        ErrorCode::SourceTooLarge,
        format!("the upload is larger than {cap} bytes; send a smaller image"),
    )
}

/// Streams `chunks` into UploadSource, counting bytes against `cap`.
async fn stream_upload(
    state: &AppState,
    caller: &Caller,
    metadata: pb::UploadMetadata,
    mut chunks: impl Stream<Item = Result<Bytes, ApiError>> + Send + Unpin,
    cap: u64,
) -> ApiResult<pb::Upload> {
    let (tx, rx) = mpsc::channel(8);
    let first = pb::UploadSourceRequest {
        part: Some(Part::Metadata(metadata)),
    };
    tx.send(first)
        .await
        .map_err(|_| ApiError::internal("the upload channel closed before it started"))?;
    let complete = Arc::new(AtomicBool::new(false));
    let stream = UploadStream {
        rx,
        complete: Arc::clone(&complete),
        poisoned: false,
    };
    // The call runs in its own task so that it outlives this handler: if the HTTP client goes away and
    // the handler is dropped, the call still sends the poison and waits for the refusal. Dropping the
    // call instead would reset the stream, which the server reads as a normal end of the upload.
    let mut jobs = state.jobs.clone();
    let request = caller.request(stream);
    let mut call = tokio::spawn(async move { jobs.upload_source(request).await });
    let body = &mut chunks;
    let mut pump = Box::pin(async move {
        let outcome = pump(body, &tx, cap).await;
        (outcome, tx)
    });
    let mut pumped = false;
    let failure = loop {
        tokio::select! {
            answer = &mut call => match answer {
                Ok(Ok(upload)) => return Ok(upload.into_inner()),
                // Refused before the body was read to its end (a bad key, say).
                Ok(Err(status)) => break ApiError::from(status),
                Err(_) => break ApiError::internal("the upload call stopped unexpectedly"),
            },
            (outcome, tx) = &mut pump, if !pumped => {
                pumped = true;
                match outcome {
                    // The whole body went out: dropping the sender ends the stream cleanly and the
                    // orchestrator answers next.
                    Ok(()) => {
                        complete.store(true, Ordering::SeqCst);
                        drop(tx);
                    }
                    // Without the completion mark the stream ends with a poison message.
                    Err(err) => {
                        drop(tx);
                        break err;
                    }
                }
            }
        }
    };
    drop(pump);
    drain(&mut chunks, cap).await;
    Err(failure)
}

/// Forwards the chunks; `Err` when the body broke or passed the cap.
async fn pump(
    chunks: &mut (impl Stream<Item = Result<Bytes, ApiError>> + Unpin),
    tx: &mpsc::Sender<pb::UploadSourceRequest>,
    cap: u64,
) -> Result<(), ApiError> {
    let mut total: u64 = 0;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        total = total.saturating_add(chunk.len() as u64);
        if total > cap {
            return Err(too_large(cap));
        }
        for part in chunk.chunks(CHUNK) {
            let message = pb::UploadSourceRequest {
                part: Some(Part::Chunk(part.to_vec())),
            };
            if tx.send(message).await.is_err() {
                // The call already ended; its answer says why.
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Reads (and drops) what the client still sends, up to another cap's worth and a few seconds, so that a
/// client still writing its body reads the error answer rather than a reset connection.
async fn drain(chunks: &mut (impl Stream<Item = Result<Bytes, ApiError>> + Unpin), cap: u64) {
    let mut read: u64 = 0;
    let _ = tokio::time::timeout(DRAIN_FOR, async {
        while let Some(Ok(more)) = chunks.next().await {
            read = read.saturating_add(more.len() as u64);
            if read > cap {
                break;
            }
        }
    })
    .await;
}

/// The request stream of UploadSource. It ends cleanly only after the gateway marked the body complete;
/// if the sender goes away otherwise (the cap was passed, the body broke, the HTTP client hung up and
/// the handler was dropped), it sends a second metadata message first, which the orchestrator refuses,
/// so a partial body can never be stored as an upload.
struct UploadStream {
    rx: mpsc::Receiver<pb::UploadSourceRequest>,
    complete: Arc<AtomicBool>,
    poisoned: bool,
}

impl Stream for UploadStream {
    type Item = pb::UploadSourceRequest;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(None) if !self.complete.load(Ordering::SeqCst) && !self.poisoned => {
                self.poisoned = true;
                Poll::Ready(Some(pb::UploadSourceRequest {
                    part: Some(Part::Metadata(pb::UploadMetadata::default())),
                }))
            }
            other => other,
        }
    }
}

/// A deleted upload.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct DeletedUpload {
    /// The deleted upload's id; jobs can no longer name it.
    pub id: String,
}

/// Delete an upload: its stored bytes and record. Jobs that already ran from it keep their outputs.
#[utoipa::path(
    delete,
    path = "/v1/uploads/{id}",
    operation_id = "deleteUpload",
    tag = "uploads",
    params(
        ("id" = String, Path, description = "The upload id"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "The upload is deleted", body = DeletedUpload),
        (status = "default", description = "An error", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    crate::extract::PathParam(id): crate::extract::PathParam<String>,
) -> ApiResult<Json<DeletedUpload>> {
    let deleted = state
        .jobs
        .clone()
        .delete_upload(caller.request(pb::DeleteUploadRequest { upload_id: id }))
        .await?
        .into_inner();
    Ok(Json(DeletedUpload {
        id: deleted.upload_id,
    }))
}
