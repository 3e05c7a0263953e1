//! The gateway's one error type and its JSON form: `{"error": {"code", "reason", "message", "details"}}`
//! with the HTTP status of SPEC §5. gRPC failures are read with `atelier_codes::decode`, so the table lives
//! in one place (crates/codes); only UNIMPLEMENTED without an ErrorInfo is the gateway's own (501).

use atelier_codes::ErrorCode;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tonic_types::StatusExt;
use utoipa::ToSchema;

/// A failure answered to an HTTP caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// The Atelier code.
    pub code: ErrorCode,
    /// The HTTP status; the table's unless the failure has no row (501, 405).
    pub status: StatusCode,
    /// The reason string; the code's reason unless the status says otherwise.
    pub reason: &'static str,
    /// What went wrong, for a person.
    pub message: String,
    /// Field violations of a bad request.
    pub details: Vec<FieldViolation>,
}

/// One field of the request and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldViolation {
    /// The field, for example `sources[0].url`.
    pub field: String,
    pub description: String,
}

/// The JSON body of every error of the `/v1` API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

/// The error itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorObject {
    /// The SPEC §5 number, for example 1004.
    pub code: u32,
    /// The SPEC §5 reason, for example `NOT_FOUND`.
    pub reason: String,
    pub message: String,
    /// Field violations for bad requests; empty otherwise.
    pub details: Vec<FieldViolation>,
}

impl ApiError {
    /// A failure with the table's status and reason for `code`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            status: http_status(code),
            reason: code.reason(),
            message: message.into(),
            details: Vec::new(),
        }
    }

    /// A 1003 INVALID_ARGUMENT naming the field.
    pub fn field(field: impl Into<String>, description: impl Into<String>) -> Self {
        let field = field.into();
        let description = description.into();
        let mut err = Self::new(
            ErrorCode::InvalidArgument,
            format!("{field}: {description}"),
        );
        err.details.push(FieldViolation { field, description });
        err
    }

    /// A 1003 INVALID_ARGUMENT about the request as a whole (malformed JSON, bad query string).
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// A 1006 INTERNAL: something the gateway cannot explain better (never a panic).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorObject {
                code: self.code.number(),
                reason: self.reason.to_string(),
                message: self.message.clone(),
                details: self.details.clone(),
            },
        }
    }
}

/// The HTTP status of a code, from the SPEC §5 table.
pub fn http_status(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A job the orchestrator answered with a word the views do not know (a newer orchestrator): 1006.
impl From<atelier_views::Unknown> for ApiError {
    fn from(unknown: atelier_views::Unknown) -> Self {
        Self::internal(unknown.to_string())
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        let has_info = status.get_details_error_info().is_some();
        let decoded = atelier_codes::decode(&status);
        let mut err = Self::new(decoded.code, decoded.message);
        if status.code() == tonic::Code::Unimplemented && !has_info {
            err.status = StatusCode::NOT_IMPLEMENTED;
            err.reason = "UNIMPLEMENTED";
        }
        if status.code() == tonic::Code::Unavailable && !has_info {
            // The orchestrator could not be reached at all: say so rather than echo a transport error.
            err.message = format!("the orchestrator is unavailable: {}", status.message());
        }
        if let Some(bad) = status.get_details_bad_request() {
            err.details = bad
                .field_violations
                .into_iter()
                .map(|v| FieldViolation {
                    field: v.field,
                    description: v.description,
                })
                .collect();
        }
        err
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code.number(), message = %self.message, "request failed");
        }
        (self.status, Json(self.body())).into_response()
    }
}

/// The result of a `/v1` handler.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_table() {
        let err = ApiError::from(atelier_codes::status(ErrorCode::QuotaExhausted, "no quota"));
        assert_eq!(err.status, StatusCode::PAYMENT_REQUIRED);
        assert_eq!(err.body().error.code, 2002);
        assert_eq!(err.body().error.reason, "QUOTA_EXHAUSTED");
        let err = ApiError::from(atelier_codes::status(ErrorCode::TooManyActiveJobs, "busy"));
        assert_eq!(err.status, StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn unimplemented_without_info_is_501_and_unknown_is_500() {
        let err = ApiError::from(tonic::Status::unimplemented("later"));
        assert_eq!(err.status, StatusCode::NOT_IMPLEMENTED);
        assert_eq!(err.code, ErrorCode::Internal);
        let err = ApiError::from(tonic::Status::data_loss("what"));
        assert_eq!(err.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(err.body().error.code, 1006);
    }

    #[test]
    fn field_violations_are_kept() {
        let status = atelier_codes::bad_request(&[atelier_codes::FieldViolation::new(
            "sources", "too many",
        )]);
        let err = ApiError::from(status);
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert_eq!(err.details.len(), 1);
        assert_eq!(err.details[0].field, "sources");
    }
}
