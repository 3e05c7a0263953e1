//! `X-Request-Id`: taken from the caller when it is a sane token, generated otherwise, echoed on the
//! response, logged with every line of the request and passed to the orchestrator as `x-request-id`.

use std::time::Instant;

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

/// The request id header.
pub const HEADER: &str = "x-request-id";

/// The id of the request being served, kept in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    /// The caller's id if it is 1..=128 visible ASCII characters, else a new UUID.
    pub fn accept_or_generate(sent: Option<&HeaderValue>) -> Self {
        let sent = sent
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()));
        Self(sent.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_string))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The middleware: one span per request carrying its id, method and route.
pub async fn layer(mut request: Request, next: Next) -> Response {
    let id = RequestId::accept_or_generate(request.headers().get(HEADER));
    request.extensions_mut().insert(id.clone());
    let span = tracing::info_span!(
        "http",
        request_id = %id.as_str(),
        method = %request.method(),
        path = %request.uri().path(),
    );
    let started = Instant::now();
    let mut response = next.run(request).instrument(span.clone()).await;
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            millis = started.elapsed().as_millis() as u64,
            "request served"
        );
    });
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response.headers_mut().insert(HEADER, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_ids_and_replaces_others() {
        let sent = HeaderValue::from_static("req-42");
        assert_eq!(
            RequestId::accept_or_generate(Some(&sent)).as_str(),
            "req-42"
        );
        let spaced = HeaderValue::from_static("has space");
        assert_ne!(
            RequestId::accept_or_generate(Some(&spaced)).as_str(),
            "has space"
        );
        let long = HeaderValue::from_str(&"x".repeat(129)).expect("header");
        assert_eq!(
            RequestId::accept_or_generate(Some(&long)).as_str().len(),
            36
        );
        assert_eq!(RequestId::accept_or_generate(None).as_str().len(), 36);
    }
}
