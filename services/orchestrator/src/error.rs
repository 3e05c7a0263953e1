//! The orchestrator's one error type and its one mapping to a gRPC status (SPEC §5).

use atelier_codes::{ErrorCode, FieldViolation};
use tonic::Status;

/// Everything a call of the orchestrator can fail with.
#[derive(thiserror::Error, Debug)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("invalid request")]
    BadRequest(Vec<FieldViolation>),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A request that is well formed but not allowed in the current state (a workflow transition
    /// from the wrong state): 1003 with a sentence saying why.
    #[error("{0}")]
    Refused(String),
    /// Something with this name exists already (a workspace's SKU): 1005.
    #[error("{0}")]
    AlreadyExists(String),
    #[error("the idempotency key was already used with a different request")]
    IdempotencyConflict,
    #[error("account {0} has no active membership")]
    MembershipRequired(String),
    #[error("the job costs {needed} and the balance is {balance}")]
    QuotaExhausted { needed: i64, balance: i64 },
    #[error(
        "the account already has {limit} active jobs, the most allowed; wait for one to finish"
    )]
    TooManyActiveJobs { limit: u32 },
    #[error("{0}")]
    ModelUnavailable(String),
    #[error("{0}")]
    UnsupportedFormat(String),
    #[error("the upload is larger than {limit} bytes")]
    SourceTooLarge { limit: u64 },
    #[error("storage: {0}")]
    Storage(#[from] atelier_storage::StorageError),
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    /// A refusal another service (a processor) made, passed on with its code and details.
    #[error("{}", .0.message())]
    Relayed(Status),
    /// A service this call needs cannot be reached now; the caller may try again.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// A bad request naming one field.
    pub fn field(field: &str, description: impl Into<String>) -> Self {
        Self::BadRequest(vec![FieldViolation::new(field, description)])
    }

    /// The same error with its fields named under `prefix` (`jobs[3]` makes `jobs[3].sources`).
    pub fn under(self, prefix: &str) -> Self {
        match self {
            Self::BadRequest(violations) => Self::BadRequest(
                violations
                    .into_iter()
                    .map(|mut v| {
                        v.field = format!("{prefix}.{}", v.field);
                        v
                    })
                    .collect(),
            ),
            other => other,
        }
    }

    /// The error as a failure inside an answer (a batch entry): its code, reason and message.
    pub fn failure(self) -> atelier_proto::v1::Failure {
        let status = Status::from(self);
        let code = atelier_codes::decode(&status).code;
        atelier_proto::v1::Failure {
            code: code.number(),
            reason: code.reason().to_string(),
            message: status.message().to_string(),
        }
    }
}

impl From<sea_orm::TransactionError<ApiError>> for ApiError {
    fn from(err: sea_orm::TransactionError<ApiError>) -> Self {
        match err {
            sea_orm::TransactionError::Connection(e) => Self::Db(e),
            sea_orm::TransactionError::Transaction(e) => e,
        }
    }
}

impl From<ApiError> for Status {
    fn from(err: ApiError) -> Self {
        let code = match &err {
            ApiError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            ApiError::PermissionDenied(_) => ErrorCode::PermissionDenied,
            ApiError::BadRequest(violations) => return atelier_codes::bad_request(violations),
            ApiError::NotFound(_) => ErrorCode::NotFound,
            ApiError::Refused(_) => ErrorCode::InvalidArgument,
            ApiError::AlreadyExists(_) => ErrorCode::IdempotencyConflict,
            ApiError::IdempotencyConflict => ErrorCode::IdempotencyConflict,
            ApiError::MembershipRequired(_) => ErrorCode::MembershipRequired,
            ApiError::QuotaExhausted { .. } => ErrorCode::QuotaExhausted,
            ApiError::TooManyActiveJobs { .. } => ErrorCode::TooManyActiveJobs,
            ApiError::ModelUnavailable(_) => ErrorCode::ModelUnavailable,
            ApiError::UnsupportedFormat(_) => ErrorCode::UnsupportedFormat,
            ApiError::SourceTooLarge { .. } => ErrorCode::SourceTooLarge,
            ApiError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                return atelier_codes::transient_status(
                    ErrorCode::StorageFailed,
                    "object storage is unavailable, try again",
                );
            }
            ApiError::Db(e) if crate::db::is_unavailable(e) => {
                tracing::error!(error = %e, "database unavailable");
                return atelier_codes::transient_status(
                    ErrorCode::Unavailable,
                    "the database is unavailable, try again",
                );
            }
            ApiError::Db(e) => {
                // The details stay in our logs; callers get a stable message.
                tracing::error!(error = %e, "database failure");
                return atelier_codes::status(ErrorCode::Internal, "internal error, try again");
            }
            ApiError::Relayed(status) => {
                return Status::with_details(
                    status.code(),
                    status.message(),
                    status.details().to_vec().into(),
                )
            }
            ApiError::Unavailable(message) => {
                return atelier_codes::transient_status(ErrorCode::Unavailable, message.clone())
            }
            ApiError::Internal(message) => {
                tracing::error!(%message, "internal failure");
                return atelier_codes::status(ErrorCode::Internal, "internal error, try again");
            }
        };
        atelier_codes::status(code, err.to_string())
    }
}

/// Result of an orchestrator call.
pub type ApiResult<T> = Result<T, ApiError>;
