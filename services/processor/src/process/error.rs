//! Every way a task attempt fails, and the one place they become gRPC statuses (SPEC §5).

use atelier_codes::{bad_request, decode, status, transient_status, ErrorCode, FieldViolation};
use atelier_engine::EngineError;
use atelier_proto::v1;
use atelier_storage::StorageError;
use tonic::Status;

use crate::download::DownloadError;
use crate::providers::ProviderError;

/// Why a task attempt stopped without completing.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The request itself is malformed.
    #[error("invalid request: {}", describe(.0))]
    Invalid(Vec<FieldViolation>),
    /// The kind or model needs a provider this processor does not have.
    #[error("{0}")]
    ModelUnavailable(String),
    /// Fetching a URL source failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// Reading an object-storage source failed.
    #[error("reading source object: {0}")]
    SourceObject(StorageError),
    /// Storing an output failed.
    #[error("storing output: {0}")]
    Upload(StorageError),
    /// A model provider call failed.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Probing or running the engine failed.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The caller dropped the stream; nothing is reported to anyone.
    #[error("the caller went away")]
    Cancelled,
    /// A bug or a crashed worker thread.
    #[error("internal error: {0}")]
    Internal(String),
}

fn describe(violations: &[FieldViolation]) -> String {
    let parts: Vec<String> = violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect();
    parts.join("; ")
}

impl ProcessError {
    /// The failure as stored on a task: code, reason and message.
    pub fn failure(self) -> v1::Failure {
        let decoded = decode(&Status::from(self));
        v1::Failure {
            code: decoded.code.number(),
            reason: decoded.code.reason().to_string(),
            message: decoded.message,
        }
    }

    /// A single bad field.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

impl From<ProcessError> for Status {
    fn from(err: ProcessError) -> Self {
        let message = err.to_string();
        match err {
            ProcessError::Invalid(violations) => bad_request(&violations),
            ProcessError::ModelUnavailable(_) => status(ErrorCode::ModelUnavailable, message),
            ProcessError::Download(e) => download_status(&e),
            ProcessError::SourceObject(e) => match e {
                StorageError::NotFound(_) => status(ErrorCode::DownloadFailed, message),
                StorageError::TooLarge { .. } => status(ErrorCode::SourceTooLarge, message),
                StorageError::InvalidKey(reason) => {
                    bad_request(&[FieldViolation::new("source.object_key", reason)])
                }
                StorageError::Backend(_) | StorageError::Config(_) => {
                    transient_status(ErrorCode::StorageFailed, message)
                }
            },
            ProcessError::Upload(e) => match e {
                StorageError::InvalidKey(reason) => {
                    bad_request(&[FieldViolation::new("output_prefix", reason)])
                }
                _ => transient_status(ErrorCode::StorageFailed, message),
            },
            ProcessError::Provider(e) => match e {
                ProviderError::Refused { .. } => status(ErrorCode::ContentRejected, message),
                ProviderError::NoSubject { .. } => status(ErrorCode::MattingUncertain, message),
                ProviderError::KeyRejected { .. } => status(ErrorCode::ModelUnavailable, message),
                ProviderError::InvalidRequest { .. } => {
                    bad_request(&[FieldViolation::new("params", message)])
                }
                e if e.is_transient() => transient_status(ErrorCode::ModelCallFailed, message),
                _ => status(ErrorCode::ModelCallFailed, message),
            },
            ProcessError::Engine(e) => {
                let code = ErrorCode::from_number(e.code()).unwrap_or(ErrorCode::Internal);
                if code == ErrorCode::InvalidArgument {
                    bad_request(&[FieldViolation::new("params", e.to_string())])
                } else {
                    status(code, message)
                }
            }
            ProcessError::Cancelled => status(ErrorCode::Cancelled, message),
            ProcessError::Internal(_) => status(ErrorCode::Internal, message),
        }
    }
}

fn download_status(err: &DownloadError) -> Status {
    let message = err.to_string();
    match err {
        DownloadError::InvalidUrl(reason) => {
            bad_request(&[FieldViolation::new("source.url", reason.clone())])
        }
        DownloadError::UnsupportedScheme(_)
        | DownloadError::BlockedAddress { .. }
        | DownloadError::BlockedHost(_) => status(ErrorCode::SourceBlocked, message),
        DownloadError::TooLarge { .. } => status(ErrorCode::SourceTooLarge, message),
        // Too many redirects is a property of the source, not of where it lives: 3002, not retried.
        DownloadError::TooManyRedirects
        | DownloadError::BadRedirect(_)
        | DownloadError::Status(_)
        | DownloadError::Timeout(_)
        | DownloadError::Network(_) => {
            if err.is_transient() {
                transient_status(ErrorCode::DownloadFailed, message)
            } else {
                status(ErrorCode::DownloadFailed, message)
            }
        }
    }
}
