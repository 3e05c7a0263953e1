//! `GET|HEAD /v1/files/{token}`: objects of a local storage folder behind signed, expiring links.
//!
//! The orchestrator mints the links when a job is read (see `atelier_storage::Links`); the token is
//! checked here with the same secret (`ATELIER_LINK_SECRET`). No API key is needed: the link is the
//! credential, so it can be put in an `<img src>`. S3 storage gets presigned links instead and never
//! comes here.

use std::sync::Arc;

use atelier_codes::ErrorCode;
use atelier_storage::{unix_now, LinkSigner, Storage, StorageError, TokenError};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ErrorBody};
use crate::extract::PathParam;

/// Largest object served (a guard: outputs are far smaller).
const MAX_FILE_BYTES: u64 = 512 * 1024 * 1024;

/// The file server as handlers take it from the gateway's state: none without local storage and a
/// link secret.
#[derive(Clone)]
pub struct LocalFiles(pub Option<Arc<FileServer>>);

/// The storage folder and the secret the links are checked with.
#[derive(Clone, Debug)]
pub struct FileServer {
    pub storage: Storage,
    pub signer: LinkSigner,
}

/// One object behind a signed link. Answers `Content-Type`, `ETag` (the SHA-256 of the bytes),
/// `Cache-Control` (private, until the link expires), single `Range` requests (206/416),
/// `If-None-Match` (304) and `HEAD`.
#[utoipa::path(
    get,
    path = "/v1/files/{token}",
    operation_id = "getFile",
    tag = "files",
    params(
        ("token" = String, Path, description = "The signed token of a result link, as minted in a job's output URLs"),
        ("Range" = Option<String>, Header, description = "One byte range, `bytes=first-last`, `bytes=first-` or `bytes=-suffix`"),
        ("If-None-Match" = Option<String>, Header, description = "The ETag of a copy the caller holds"),
    ),
    responses(
        (status = 200, description = "The whole object", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The requested range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "The caller's copy is current"),
        (status = 403, description = "The link is not valid (garbled, tampered with or signed with another secret)", body = ErrorBody),
        (status = 404, description = "The object no longer exists (its job was deleted), or file links are not configured", body = ErrorBody),
        (status = 410, description = "The link expired; read the job again for a fresh one", body = ErrorBody),
        (status = 416, description = "The range is outside the object", body = ErrorBody),
        (status = "default", description = "An error", body = ErrorBody),
    )
)]
pub async fn get_file(
    State(LocalFiles(files)): State<LocalFiles>,
    PathParam(token): PathParam<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Some(files) = files.as_deref() else {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            "this gateway serves no file links (no local storage and link secret configured)",
        ));
    };
    serve(files, &token, &method, &headers).await
}

async fn serve(
    files: &FileServer,
    token: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let now = unix_now();
    let grant = files.signer.verify(token, now).map_err(|err| match err {
        TokenError::Invalid => ApiError::new(ErrorCode::PermissionDenied, "the link is not valid"),
        TokenError::Expired { expired_at } => {
            let mut err = ApiError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "the link expired {} seconds ago; read the job again for a fresh link",
                    now.saturating_sub(expired_at)
                ),
            );
            err.status = StatusCode::GONE;
            err
        }
    })?;
    let data = match files.storage.get(&grant.key, MAX_FILE_BYTES).await {
        Ok(data) => data,
        Err(StorageError::NotFound(_)) => {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "the file no longer exists; its job may have been deleted",
            ))
        }
        Err(err) => {
            return Err(ApiError::new(
                ErrorCode::StorageFailed,
                format!("cannot read the file: {err}"),
            ))
        }
    };
    let etag = format!("\"{}\"", hex::encode(Sha256::digest(&data)));
    let max_age = grant.expires_at.saturating_sub(now);
    let mut common = HeaderMap::new();
    let content_type = if grant.content_type.is_empty() {
        "application/octet-stream"
    } else {
        &grant.content_type
    };
    insert(&mut common, header::CONTENT_TYPE, content_type);
    insert(&mut common, header::ETAG, &etag);
    insert(
        &mut common,
        header::CACHE_CONTROL,
        &format!("private, max-age={max_age}"),
    );
    insert(&mut common, header::ACCEPT_RANGES, "bytes");

    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if not_modified {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }

    let total = data.len() as u64;
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, total));
    let (status, body) = match range {
        None | Some(RangeAnswer::Ignore) => (StatusCode::OK, data),
        Some(RangeAnswer::Unsatisfiable) => {
            let mut err = ApiError::new(
                ErrorCode::InvalidArgument,
                format!("the range is outside the file's {total} bytes"),
            );
            err.status = StatusCode::RANGE_NOT_SATISFIABLE;
            let mut response = err.into_response();
            insert(
                response.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{total}"),
            );
            return Ok(response);
        }
        Some(RangeAnswer::Part { first, last }) => {
            insert(
                &mut common,
                header::CONTENT_RANGE,
                &format!("bytes {first}-{last}/{total}"),
            );
            let (start, end) = (
                usize::try_from(first).unwrap_or(usize::MAX),
                usize::try_from(last).unwrap_or(usize::MAX),
            );
            (StatusCode::PARTIAL_CONTENT, data.slice(start..=end))
        }
    };
    insert(&mut common, header::CONTENT_LENGTH, &body.len().to_string());
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from(body)
    };
    Ok((status, common, body).into_response())
}

fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// What a `Range` header asks of an object of `total` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeAnswer {
    /// Not a single byte range this server answers: the whole object is sent (RFC 9110 allows it).
    Ignore,
    /// No byte of the range exists.
    Unsatisfiable,
    /// Bytes `first..=last`.
    Part { first: u64, last: u64 },
}

fn parse_range(value: &str, total: u64) -> RangeAnswer {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return RangeAnswer::Ignore;
    };
    if spec.contains(',') {
        return RangeAnswer::Ignore;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Ignore;
    };
    let (first, last) = (first.trim(), last.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    match (first.is_empty(), last.is_empty()) {
        // bytes=-suffix: the last `suffix` bytes.
        (true, false) => match parse(last) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(suffix) if total > 0 => RangeAnswer::Part {
                first: total.saturating_sub(suffix),
                last: total - 1,
            },
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Ignore,
        },
        // bytes=first-
        (false, true) => match parse(first) {
            Some(first) if first < total => RangeAnswer::Part {
                first,
                last: total - 1,
            },
            Some(_) => RangeAnswer::Unsatisfiable,
            None => RangeAnswer::Ignore,
        },
        (false, false) => match (parse(first), parse(last)) {
            (Some(first), Some(last)) if first > last => RangeAnswer::Ignore,
            (Some(first), Some(last)) if first < total => RangeAnswer::Part {
                first,
                last: last.min(total - 1),
            },
            (Some(_), Some(_)) => RangeAnswer::Unsatisfiable,
            _ => RangeAnswer::Ignore,
        },
        (true, true) => RangeAnswer::Ignore,
    }
}

/// Builds the file server when the gateway has a local storage folder and a link secret.
pub async fn file_server(
    storage: Option<&str>,
    secret: Option<&str>,
) -> anyhow::Result<Option<Arc<FileServer>>> {
    let (Some(location), Some(secret)) = (
        storage.map(str::trim).filter(|s| !s.is_empty()),
        secret.filter(|s| !s.trim().is_empty()),
    ) else {
        return Ok(None);
    };
    if location.starts_with("s3://") {
        // S3 results are presigned links straight to the bucket.
        return Ok(None);
    }
    let signer = LinkSigner::new(secret)?;
    let storage = Storage::open(location, &atelier_storage::S3Options::default()).await?;
    Ok(Some(Arc::new(FileServer { storage, signer })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        use RangeAnswer::*;
        assert_eq!(parse_range("bytes=0-3", 10), Part { first: 0, last: 3 });
        assert_eq!(parse_range("bytes=4-", 10), Part { first: 4, last: 9 });
        assert_eq!(parse_range("bytes=-3", 10), Part { first: 7, last: 9 });
        assert_eq!(parse_range("bytes=-30", 10), Part { first: 0, last: 9 });
        assert_eq!(parse_range("bytes=5-100", 10), Part { first: 5, last: 9 });
        assert_eq!(parse_range("bytes=10-", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 10), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,4-5", 10), Ignore);
        assert_eq!(parse_range("items=0-1", 10), Ignore);
        assert_eq!(parse_range("bytes=5-2", 10), Ignore);
        assert_eq!(parse_range("bytes=x-", 10), Ignore);
    }
}
