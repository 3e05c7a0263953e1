//! How a provider call fails; mapped to SPEC §5 codes in `process::error`.

use std::time::Duration;

/// Why a call to a model provider did not produce images.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The provider asked us to slow down (HTTP 429): retried (3001, transient).
    #[error("model provider `{provider}` is rate limiting (HTTP 429): {message}{}", retry_hint(*.retry_after))]
    RateLimited {
        /// Provider name.
        provider: String,
        /// What it said.
        message: String,
        /// How long it asked us to wait (`Retry-After`), when it said.
        retry_after: Option<Duration>,
    },
    /// The account has no credits left (HTTP 402): not retried, someone has to top it up (3001).
    #[error(
        "model provider `{provider}` is out of credits (HTTP 402): {message}; top up the account \
         or configure another matting provider"
    )]
    OutOfCredits {
        /// Provider name.
        provider: String,
        /// What it said.
        message: String,
    },
    /// The matting service found no subject to cut out (3010, not retried).
    #[error("model provider `{provider}` found no subject to cut out: {message}")]
    NoSubject {
        /// Provider name.
        provider: String,
        /// What it said.
        message: String,
    },
    /// The provider failed on its side (HTTP 5xx): retried (3001, transient).
    #[error("model provider `{provider}` failed with HTTP {status}: {message}")]
    Server {
        /// Provider name.
        provider: String,
        /// The status code.
        status: u16,
        /// What it said.
        message: String,
    },
    /// No answer in time: retried (3001, transient).
    #[error("model provider `{provider}` did not answer within {after:?}")]
    Timeout {
        /// Provider name.
        provider: String,
        /// The configured timeout.
        after: Duration,
    },
    /// Connecting or reading failed: retried (3001, transient).
    #[error("cannot reach model provider `{provider}`: {message}")]
    Network {
        /// Provider name.
        provider: String,
        /// The transport error.
        message: String,
    },
    /// The provider's safety system refused the prompt or image (3007, not retried).
    #[error("model provider `{provider}` refused the request: {message}")]
    Refused {
        /// Provider name.
        provider: String,
        /// What it said.
        message: String,
    },
    /// The provider refused the request for another reason, e.g. a bad key (3001, not retried).
    #[error("model provider `{provider}` rejected the request with HTTP {status}: {message}")]
    Rejected {
        /// Provider name.
        provider: String,
        /// The status code.
        status: u16,
        /// What it said.
        message: String,
    },
    /// The provider does not accept the configured API key: it marks itself unavailable (3006) until
    /// the processor starts with another configuration; another provider of the model is tried.
    #[error("model provider `{provider}` rejected its API key: {message}")]
    KeyRejected {
        /// Provider name.
        provider: String,
        /// What it said.
        message: String,
    },
    /// The provider found a parameter invalid (1003, not retried).
    #[error("model provider `{provider}` found the request invalid: {message}")]
    InvalidRequest {
        /// Provider name.
        provider: String,
        /// What it said.
        message: String,
    },
    /// The answer was not what the Images API promises (3001, retried: it may be a glitch).
    #[error("model provider `{provider}` sent an unusable answer: {message}")]
    BadResponse {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// The answer is readable but cannot be used and another attempt will not help (3001).
    #[error("model provider `{provider}` sent an unusable image: {message}")]
    BadImage {
        /// Provider name.
        provider: String,
        /// What was wrong.
        message: String,
    },
    /// The adapter could not be built (configuration).
    #[error("model provider `{provider}` cannot be set up: {message}")]
    Setup {
        /// Provider name.
        provider: String,
        /// What went wrong.
        message: String,
    },
}

fn retry_hint(after: Option<Duration>) -> String {
    after.map_or_else(String::new, |d| {
        format!(" (it asks to retry after {} s)", d.as_secs_f64().ceil())
    })
}

impl ProviderError {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. }
                | Self::Server { .. }
                | Self::Timeout { .. }
                | Self::Network { .. }
                | Self::BadResponse { .. }
        )
    }

    /// Whether the next provider of the same model should be tried (transient, or this provider's
    /// key is not accepted).
    pub fn falls_back(&self) -> bool {
        self.is_transient() || matches!(self, Self::KeyRejected { .. })
    }

    /// The `result` label of the provider-calls metric.
    pub fn metric_result(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "server_error",
            Self::Timeout { .. } => "timeout",
            Self::Network { .. } => "network_error",
            Self::Refused { .. } => "refused",
            Self::Rejected { .. } => "rejected",
            Self::OutOfCredits { .. } => "out_of_credits",
            Self::NoSubject { .. } => "no_subject",
            Self::KeyRejected { .. } => "key_rejected",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::BadResponse { .. } | Self::BadImage { .. } => "bad_response",
            Self::Setup { .. } => "error",
        }
    }
}
