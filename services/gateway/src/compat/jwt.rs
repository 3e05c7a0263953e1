//! Bearer JWTs on the compatibility routes: the replaced systems' clients send the token they already
//! have (`Authorization: Bearer <jwt>`), and the gateway turns a valid one into an Atelier call.
//!
//! The operator configures the HS256 secret the old system signed its tokens with and a tenant-wide
//! Atelier key of the tenant those users belong to. A token whose signature, `alg`, `exp` and `nbf`
//! check out acts as the account its subject names (`sub`, else `userId`, `user_id` or `uid`,
//! strings or numbers) through that key; anything else is 1001. Atelier keys keep working beside
//! tokens, and the `/v1` API never accepts tokens. One configuration serves every family.

use std::sync::Arc;

use atelier_codes::ErrorCode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::error::ApiError;

/// The secret and the key a token's caller acts through.
#[derive(Clone)]
pub struct JwtAuth {
    secret: Vec<u8>,
    /// `Bearer <tenant-wide Atelier key>`.
    pub authorization: String,
}

impl std::fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtAuth { .. }")
    }
}

/// Claims that may name the account, in order.
const SUBJECT_CLAIMS: [&str; 4] = ["sub", "userId", "user_id", "uid"];

impl JwtAuth {
    /// Tokens signed with `secret` act through the tenant-wide `api_key`.
    pub fn new(secret: impl Into<Vec<u8>>, api_key: &str) -> Arc<Self> {
        Arc::new(Self {
            secret: secret.into(),
            authorization: format!("Bearer {}", api_key.trim()),
        })
    }

    /// Whether `token` looks like a JWT (three dot-separated parts) rather than an Atelier key.
    pub fn is_token(token: &str) -> bool {
        token.split('.').count() == 3 && !token.starts_with("atl_")
    }

    /// The account a valid token names, at `now` (seconds since the epoch).
    pub fn subject(&self, token: &str, now: i64) -> Result<String, ApiError> {
        let refused = |why: &str| {
            ApiError::new(
                ErrorCode::Unauthenticated,
                format!("the bearer token {why}"),
            )
        };
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(refused("is not a JWT"));
        };
        let decode = |part: &str| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(part.trim_end_matches('='))
                .map_err(|_| refused("is not base64url"))
        };
        let json = |bytes: Vec<u8>| {
            serde_json::from_slice::<Value>(&bytes).map_err(|_| refused("is not JSON"))
        };
        let head = json(decode(header)?)?;
        if head["alg"] != "HS256" {
            return Err(refused("is not signed with HS256"));
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret)
            .map_err(|_| ApiError::internal("the token secret is unusable"))?;
        mac.update(header.as_bytes());
        mac.update(b".");
        mac.update(payload.as_bytes());
        mac.verify_slice(&decode(signature)?)
            .map_err(|_| refused("has a signature that does not match"))?;
        let claims = json(decode(payload)?)?;
        if claims["exp"].as_i64().is_some_and(|exp| exp <= now) {
            return Err(refused("has expired"));
        }
        if claims["nbf"].as_i64().is_some_and(|nbf| nbf > now) {
            return Err(refused("is not valid yet"));
        }
        SUBJECT_CLAIMS
            .iter()
            .find_map(|claim| match &claims[*claim] {
                Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .ok_or_else(|| refused("names no user (sub, userId, user_id or uid)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HS256 token of `claims` signed with `secret`.
    pub fn token(secret: &[u8], claims: &Value) -> String {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let head = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = b64(claims.to_string().as_bytes());
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("key");
        mac.update(format!("{head}.{body}").as_bytes());
        format!("{head}.{body}.{}", b64(&mac.finalize().into_bytes()))
    }

    #[test]
    fn valid_tokens_name_their_user_and_bad_ones_are_1001() {
        let auth = JwtAuth::new(b"s3cret".to_vec(), "atl_key");
        let now = 1_700_000_000;
        let ok = token(
            b"s3cret",
            &serde_json::json!({"sub": "alice", "exp": now + 60}),
        );
        assert!(JwtAuth::is_token(&ok));
        assert!(!JwtAuth::is_token("atl_abc.def.ghi"));
        assert_eq!(auth.subject(&ok, now).expect("valid"), "alice");
        let numeric = token(b"s3cret", &serde_json::json!({"userId": 42}));
        assert_eq!(auth.subject(&numeric, now).expect("valid"), "42");
        for bad in [
            token(b"other", &serde_json::json!({"sub": "alice"})),
            token(b"s3cret", &serde_json::json!({"sub": "alice", "exp": now})),
            token(
                b"s3cret",
                &serde_json::json!({"sub": "alice", "nbf": now + 10}),
            ),
            token(b"s3cret", &serde_json::json!({"name": "alice"})),
            format!("{}x", ok),
            "a.b.c".to_string(),
        ] {
            let err = auth.subject(&bad, now).expect_err("refused");
            assert_eq!(err.code, ErrorCode::Unauthenticated, "{bad}");
        }
        // alg "none" is refused even with an empty signature.
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let none = format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(br#"{"sub":"alice"}"#)
        );
        assert!(auth.subject(&none, now).is_err());
    }
}
