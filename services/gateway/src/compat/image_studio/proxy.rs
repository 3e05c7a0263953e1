//! `POST /api/image-studio/proxy` (`{"url"}`, or `GET ?url=`): the image at an address the browser
//! names, for a front end that cannot read it across origins. It is fetched only through the guarded
//! downloader the processor fetches sources with ([`atelier_netguard::download`]): http(s) only, no
//! loopback, private, link-local or metadata addresses (unless the operator allows networks with
//! `--proxy-allow-nets`), every redirect hop checked and at most three of them, SPEC §4's timeouts,
//! and the body capped at the upload limit while it streams. Only JPEG, PNG and WebP are answered,
//! recognised by their bytes, never by the origin's `Content-Type`.
//!
//! Errors: a malformed URL 1003; an address that may not be reached 3005; an origin that fails,
//! answers an error status or times out 3002; a body over the cap 3008; anything but an image 3003.

use atelier_codes::ErrorCode;
use atelier_netguard::download::DownloadError;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{JsonBody, QueryParams, StudioErrorBody, StudioResult};
use crate::call::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The address of the image to fetch.
#[derive(Debug, Deserialize, ToSchema, IntoParams)]
#[schema(as = StudioProxyRequest)]
#[into_params(parameter_in = Query)]
pub struct ProxyRequest {
    /// An http(s) address of a JPEG, PNG or WebP image.
    pub url: String,
}

/// The image format recognised from its first bytes.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

fn download_error(err: DownloadError) -> ApiError {
    let code = match &err {
        DownloadError::InvalidUrl(_) | DownloadError::UnsupportedScheme(_) => {
            ErrorCode::InvalidArgument
        }
        DownloadError::BlockedAddress { .. } | DownloadError::BlockedHost(_) => {
            ErrorCode::SourceBlocked
        }
        DownloadError::TooLarge { .. } => ErrorCode::SourceTooLarge,
        DownloadError::TooManyRedirects
        | DownloadError::BadRedirect(_)
        | DownloadError::Status(_)
        | DownloadError::Timeout(_)
        | DownloadError::Network(_) => ErrorCode::DownloadFailed,
    };
    let message = err.to_string().replacen("source", "the image", 1);
    if code == ErrorCode::InvalidArgument {
        ApiError::field("url", message)
    } else {
        ApiError::new(code, message)
    }
}

async fn fetch(state: &AppState, url: &str) -> StudioResult<Response> {
    let url = url.trim();
    if url.is_empty() {
        return Err(ApiError::field("url", "give the image's http(s) address").into());
    }
    let bytes = state.proxy.fetch(url).await.map_err(download_error)?;
    let Some(content_type) = sniff(&bytes) else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedFormat,
            "the address did not answer with a JPEG, PNG or WebP image",
        )
        .into());
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "private, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        bytes,
    )
        .into_response())
}

/// Fetch an image for the browser through the guarded downloader.
#[utoipa::path(
    post,
    path = "/api/image-studio/proxy",
    operation_id = "studioProxy",
    tag = "compat-image-studio",
    request_body = ProxyRequest,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The image", content_type = "image/*", body = Vec<u8>),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn proxy_post(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    JsonBody(body): JsonBody<ProxyRequest>,
) -> StudioResult<Response> {
    check_caller(&state, caller).await?;
    fetch(&state, &body.url).await
}

/// As the POST, with the address in the query (for `<img src>`).
#[utoipa::path(
    get,
    path = "/api/image-studio/proxy",
    operation_id = "studioProxyGet",
    tag = "compat-image-studio",
    params(ProxyRequest, ("X-Atelier-Account" = Option<String>, Header, description = "The user")),
    responses(
        (status = 200, description = "The image", content_type = "image/*", body = Vec<u8>),
        (status = "default", description = "An error", body = StudioErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn proxy_get(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    QueryParams(query): QueryParams<ProxyRequest>,
) -> StudioResult<Response> {
    check_caller(&state, caller).await?;
    fetch(&state, &query.url).await
}

/// Only a signed-in caller may make the gateway fetch: the orchestrator checks the credential.
async fn check_caller(state: &AppState, caller: Result<Caller, ApiError>) -> StudioResult<()> {
    super::preferences(state, &caller?).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_recognised_by_their_bytes() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"<html>"), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0AVI "), None);
    }

    #[test]
    fn download_failures_map_to_spec_codes() {
        let code = |e| download_error(e).code.number();
        assert_eq!(code(DownloadError::InvalidUrl("x".into())), 1003);
        assert_eq!(code(DownloadError::Status(404)), 3002);
        assert_eq!(code(DownloadError::TooLarge { limit: 10 }), 3008);
        assert_eq!(code(DownloadError::TooManyRedirects), 3002);
    }
}
