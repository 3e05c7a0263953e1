//! The service-token check: every ProcessorService call carries `x-api-key: <token>`.

use atelier_codes::{status, ErrorCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata key holding the service token.
pub const API_KEY_HEADER: &str = "x-api-key";

/// A tonic interceptor admitting only callers with the shared service token.
#[derive(Clone)]
pub struct ServiceToken {
    digest: [u8; 32],
}

impl ServiceToken {
    /// Accepts exactly `token`.
    pub fn new(token: &str) -> Self {
        Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        }
    }

    /// Whether `presented` is the token, compared in constant time (digests hide the length too).
    pub fn matches(&self, presented: &[u8]) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        bool::from(self.digest.ct_eq(&presented))
    }
}

impl std::fmt::Debug for ServiceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceToken(..)")
    }
}

impl Interceptor for ServiceToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match request.metadata().get(API_KEY_HEADER) {
            None => Err(status(
                ErrorCode::Unauthenticated,
                "missing x-api-key metadata with the service token",
            )),
            Some(key) if self.matches(key.as_bytes()) => Ok(request),
            Some(_) => Err(status(
                ErrorCode::Unauthenticated,
                "x-api-key is not the service token",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let token = ServiceToken::new("s3cret");
        assert!(token.matches(b"s3cret"));
        assert!(!token.matches(b"s3cre"));
        assert!(!token.matches(b"s3cret "));
        assert!(!token.matches(b""));
    }
}
