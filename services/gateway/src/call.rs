//! What an HTTP request carries over to its gRPC call: the caller's `Authorization`, the account it acts
//! as, the trace context and the request id. The gateway never checks keys itself; the orchestrator does,
//! so a bad key is the same 1001 over REST as over gRPC.

use std::sync::Arc;

use atelier_telemetry::trace::{TraceParent, TRACEPARENT};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::HeaderMap;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};

use crate::compat::jwt::FamilyAuth;
use crate::error::ApiError;
use crate::request_id::RequestId;

/// The header naming the account a tenant-wide key acts as.
pub const ACCOUNT_HEADER: &str = "x-atelier-account";
/// The header carrying an idempotency key for submissions.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// The identity and context of one HTTP request, ready to go out as gRPC metadata.
#[derive(Clone, Debug)]
pub struct Caller {
    authorization: Option<AsciiMetadataValue>,
    account: Option<AsciiMetadataValue>,
    traceparent: AsciiMetadataValue,
    request_id: Option<AsciiMetadataValue>,
    /// `Idempotency-Key`, when sent.
    pub idempotency_key: Option<String>,
}

impl Caller {
    /// Reads the headers; a header that cannot travel as gRPC metadata is a 1003.
    pub fn from_headers(
        headers: &HeaderMap,
        request_id: Option<&RequestId>,
    ) -> Result<Self, ApiError> {
        let authorization = ascii(headers, "authorization")?;
        let account = ascii(headers, ACCOUNT_HEADER)?.filter(|v| !v.is_empty());
        // A malformed or missing traceparent starts a new trace, as the W3C recommendation says; the
        // orchestrator gets a child span of the caller's.
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse)
            .map_or_else(TraceParent::new_root, |p| p.child());
        let traceparent = AsciiMetadataValue::try_from(parent.to_string())
            .map_err(|_| ApiError::internal("trace context is not ASCII"))?;
        let request_id = request_id.and_then(|r| AsciiMetadataValue::try_from(r.as_str()).ok());
        let idempotency_key = match headers.get(IDEMPOTENCY_HEADER) {
            None => None,
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?
                    .to_string(),
            ),
        };
        Ok(Self {
            authorization,
            account,
            traceparent,
            request_id,
            idempotency_key,
        })
    }

    /// The `X-Atelier-Account` the call acts as, when sent.
    pub fn account(&self) -> Option<&str> {
        self.account.as_ref().and_then(|v| v.to_str().ok())
    }

    /// A gRPC request of `message` with this caller's metadata.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        self.fill(request.metadata_mut());
        request
    }

    fn fill(&self, metadata: &mut MetadataMap) {
        if let Some(v) = &self.authorization {
            metadata.insert("authorization", v.clone());
        }
        if let Some(v) = &self.account {
            metadata.insert(ACCOUNT_HEADER, v.clone());
        }
        metadata.insert(TRACEPARENT, self.traceparent.clone());
        if let Some(v) = &self.request_id {
            metadata.insert("x-request-id", v.clone());
        }
    }
}

fn ascii(headers: &HeaderMap, name: &'static str) -> Result<Option<AsciiMetadataValue>, ApiError> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::field(name, "must be visible ASCII"))?;
    AsciiMetadataValue::try_from(text.trim())
        .map(Some)
        .map_err(|_| ApiError::field(name, "must be visible ASCII"))
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut caller = Self::from_headers(&parts.headers, parts.extensions.get::<RequestId>())?;
        // On the compatibility routes a replaced system's JWT stands for its user, and on a family
        // whose seed had no authentication the operator may let callers without a key in.
        if let Some(family) = parts.extensions.get::<Arc<FamilyAuth>>() {
            let ascii = |text: &str, what: &str| {
                AsciiMetadataValue::try_from(text)
                    .map_err(|_| ApiError::field(what.to_string(), "must be visible ASCII"))
            };
            let token = caller
                .authorization
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim)
                .filter(|t| FamilyAuth::is_token(t));
            if let Some(token) = token {
                let now = chrono::Utc::now().timestamp();
                let subject = family.subject(token, now).await?;
                caller.authorization = Some(ascii(&family.authorization, "authorization")?);
                caller.account = Some(ascii(&subject, "sub")?);
            } else if caller.authorization.is_none() {
                if let Some(account) = family.anonymous_account() {
                    caller.authorization = Some(ascii(&family.authorization, "authorization")?);
                    caller.account = Some(ascii(account, "anonymous_account")?);
                }
            }
        }
        Ok(caller)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_auth_account_and_a_child_of_the_trace() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", "Bearer atl_x".parse().expect("header"));
        headers.insert(ACCOUNT_HEADER, "shopper-1".parse().expect("header"));
        headers.insert(
            TRACEPARENT,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .expect("header"),
        );
        let caller = Caller::from_headers(&headers, None).expect("caller");
        let request = caller.request(());
        let md = request.metadata();
        assert_eq!(md.get("authorization").expect("auth"), "Bearer atl_x");
        assert_eq!(md.get(ACCOUNT_HEADER).expect("account"), "shopper-1");
        let trace = md.get(TRACEPARENT).expect("trace").to_str().expect("ascii");
        assert!(trace.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
        assert!(!trace.contains("00f067aa0ba902b7"));
    }

    #[test]
    fn a_missing_trace_starts_a_new_one() {
        let caller = Caller::from_headers(&HeaderMap::new(), None).expect("caller");
        let request = caller.request(());
        let trace = request.metadata().get(TRACEPARENT).expect("trace");
        assert!(TraceParent::parse(trace.to_str().expect("ascii")).is_some());
        assert!(request.metadata().get("authorization").is_none());
    }
}
