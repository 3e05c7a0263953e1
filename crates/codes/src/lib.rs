//! The error codes of SPEC §5: every failure a caller sees carries one of them, as `google.rpc.ErrorInfo`
//! (reason, domain `atelier.dev`, metadata `code`) in a gRPC status, or as the JSON error of the gateway.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub mod family;

/// The `domain` of every ErrorInfo Atelier sends.
pub const DOMAIN: &str = "atelier.dev";

/// One row of the SPEC §5 table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Unauthenticated,
    PermissionDenied,
    InvalidArgument,
    NotFound,
    IdempotencyConflict,
    Internal,
    TimedOut,
    Cancelled,
    Unavailable,
    MembershipRequired,
    QuotaExhausted,
    TooManyActiveJobs,
    ModelCallFailed,
    DownloadFailed,
    UnsupportedFormat,
    InvalidDimensions,
    SourceBlocked,
    ModelUnavailable,
    ContentRejected,
    SourceTooLarge,
    StorageFailed,
    MattingUncertain,
    DecodeFailed,
}

impl ErrorCode {
    /// Every code, in table order.
    pub const ALL: [ErrorCode; 23] = [
        Self::Unauthenticated,
        Self::PermissionDenied,
        Self::InvalidArgument,
        Self::NotFound,
        Self::IdempotencyConflict,
        Self::Internal,
        Self::TimedOut,
        Self::Cancelled,
        Self::Unavailable,
        Self::MembershipRequired,
        Self::QuotaExhausted,
        Self::TooManyActiveJobs,
        Self::ModelCallFailed,
        Self::DownloadFailed,
        Self::UnsupportedFormat,
        Self::InvalidDimensions,
        Self::SourceBlocked,
        Self::ModelUnavailable,
        Self::ContentRejected,
        Self::SourceTooLarge,
        Self::StorageFailed,
        Self::MattingUncertain,
        Self::DecodeFailed,
    ];

    /// The number callers match on, for example 2002.
    pub fn number(self) -> u32 {
        self.row().0
    }

    /// The ErrorInfo reason, for example `QUOTA_EXHAUSTED`.
    pub fn reason(self) -> &'static str {
        self.row().1
    }

    /// The gRPC status code the error travels with.
    pub fn grpc(self) -> Code {
        self.row().2
    }

    /// The HTTP status the REST gateway answers with.
    pub fn http_status(self) -> u16 {
        self.row().3
    }

    /// The code with this number, if it is one of the table.
    pub fn from_number(number: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.number() == number)
    }

    /// Whether a task failing with this code may be tried again. Download and model failures are retried
    /// only when the failure was transient, which the sender says with [`transient`].
    pub fn always_retryable(self) -> bool {
        matches!(
            self,
            Self::Internal | Self::Unavailable | Self::StorageFailed
        )
    }

    fn row(self) -> (u32, &'static str, Code, u16) {
        match self {
            Self::Unauthenticated => (1001, "UNAUTHENTICATED", Code::Unauthenticated, 401),
            Self::PermissionDenied => (1002, "PERMISSION_DENIED", Code::PermissionDenied, 403),
            Self::InvalidArgument => (1003, "INVALID_ARGUMENT", Code::InvalidArgument, 400),
            Self::NotFound => (1004, "NOT_FOUND", Code::NotFound, 404),
            Self::IdempotencyConflict => (1005, "IDEMPOTENCY_CONFLICT", Code::AlreadyExists, 409),
            Self::Internal => (1006, "INTERNAL", Code::Internal, 500),
            Self::TimedOut => (1007, "TIMED_OUT", Code::DeadlineExceeded, 504),
            Self::Cancelled => (1008, "CANCELLED", Code::Cancelled, 499),
            Self::Unavailable => (1009, "UNAVAILABLE", Code::Unavailable, 503),
            Self::MembershipRequired => {
                (2001, "MEMBERSHIP_REQUIRED", Code::FailedPrecondition, 402)
            }
            Self::QuotaExhausted => (2002, "QUOTA_EXHAUSTED", Code::ResourceExhausted, 402),
            Self::TooManyActiveJobs => (2003, "TOO_MANY_ACTIVE_JOBS", Code::ResourceExhausted, 429),
            Self::ModelCallFailed => (3001, "MODEL_CALL_FAILED", Code::Unavailable, 502),
            Self::DownloadFailed => (3002, "DOWNLOAD_FAILED", Code::FailedPrecondition, 422),
            Self::UnsupportedFormat => (3003, "UNSUPPORTED_FORMAT", Code::InvalidArgument, 415),
            Self::InvalidDimensions => (3004, "INVALID_DIMENSIONS", Code::InvalidArgument, 422),
            Self::SourceBlocked => (3005, "SOURCE_BLOCKED", Code::PermissionDenied, 403),
            Self::ModelUnavailable => (3006, "MODEL_UNAVAILABLE", Code::FailedPrecondition, 422),
            Self::ContentRejected => (3007, "CONTENT_REJECTED", Code::FailedPrecondition, 422),
            Self::SourceTooLarge => (3008, "SOURCE_TOO_LARGE", Code::InvalidArgument, 413),
            Self::StorageFailed => (3009, "STORAGE_FAILED", Code::Unavailable, 503),
            Self::MattingUncertain => (3010, "MATTING_UNCERTAIN", Code::FailedPrecondition, 422),
            Self::DecodeFailed => (3017, "DECODE_FAILED", Code::InvalidArgument, 422),
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.number(), self.reason())
    }
}

/// ErrorInfo metadata key saying a failure is transient (a 5xx or a timeout) and worth another attempt.
pub const TRANSIENT_KEY: &str = "transient";

/// A field of the request and what is wrong with it, for `google.rpc.BadRequest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

impl FieldViolation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }
}

/// Builds the status for `code` with its ErrorInfo.
pub fn status(code: ErrorCode, message: impl Into<String>) -> Status {
    build(code, message.into(), false, &[])
}

/// Builds the status for `code`, marked transient so the orchestrator retries it.
pub fn transient_status(code: ErrorCode, message: impl Into<String>) -> Status {
    build(code, message.into(), true, &[])
}

/// Builds an INVALID_ARGUMENT (1003) status with ErrorInfo and BadRequest field violations.
pub fn bad_request(violations: &[FieldViolation]) -> Status {
    let message = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ");
    build(ErrorCode::InvalidArgument, message, false, violations)
}

fn build(
    code: ErrorCode,
    message: String,
    transient: bool,
    violations: &[FieldViolation],
) -> Status {
    let mut metadata = HashMap::from([("code".to_string(), code.number().to_string())]);
    if transient {
        metadata.insert(TRANSIENT_KEY.to_string(), "true".to_string());
    }
    let mut details = ErrorDetails::with_error_info(code.reason(), DOMAIN, metadata);
    for v in violations {
        details.add_bad_request_violation(v.field.clone(), v.description.clone());
    }
    Status::with_error_details(code.grpc(), message, details)
}

/// What a status says in Atelier's terms: its code (from ErrorInfo, else guessed from the gRPC code),
/// whether it is transient, and the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub code: ErrorCode,
    pub transient: bool,
    pub message: String,
}

/// Reads the Atelier code out of a status from another service.
pub fn decode(status: &Status) -> Decoded {
    let info = status.get_details_error_info();
    let from_info = info.as_ref().filter(|i| i.domain == DOMAIN).and_then(|i| {
        let number = i.metadata.get("code")?.parse().ok()?;
        ErrorCode::from_number(number)
    });
    let transient = info
        .as_ref()
        .and_then(|i| i.metadata.get(TRANSIENT_KEY))
        .is_some_and(|v| v == "true");
    let code = from_info.unwrap_or(match status.code() {
        Code::Unauthenticated => ErrorCode::Unauthenticated,
        Code::PermissionDenied => ErrorCode::PermissionDenied,
        Code::InvalidArgument => ErrorCode::InvalidArgument,
        Code::NotFound => ErrorCode::NotFound,
        Code::DeadlineExceeded => ErrorCode::TimedOut,
        Code::Cancelled => ErrorCode::Cancelled,
        Code::Unavailable => ErrorCode::Unavailable,
        _ => ErrorCode::Internal,
    });
    Decoded {
        code,
        transient,
        message: status.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.number()), "duplicate {}", code.number());
            assert_eq!(ErrorCode::from_number(code.number()), Some(code));
        }
        assert_eq!(ErrorCode::from_number(42), None);
    }

    #[test]
    fn status_carries_error_info_and_decodes_back() {
        let s = transient_status(ErrorCode::DownloadFailed, "source answered 503");
        assert_eq!(s.code(), Code::FailedPrecondition);
        let d = decode(&s);
        assert_eq!(d.code, ErrorCode::DownloadFailed);
        assert!(d.transient);
        let s = status(ErrorCode::QuotaExhausted, "no balance");
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert!(!decode(&s).transient);
    }

    #[test]
    fn bad_request_lists_fields() {
        let s = bad_request(&[FieldViolation::new("sources", "at most 100")]);
        assert_eq!(s.code(), Code::InvalidArgument);
        let br = s.get_details_bad_request().expect("bad request details");
        assert_eq!(br.field_violations[0].field, "sources");
        assert_eq!(decode(&s).code, ErrorCode::InvalidArgument);
    }
}
