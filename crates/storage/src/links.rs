//! Result links a browser can open: minted when a job is read, never stored.
//!
//! * S3 storage: a presigned `GET` of the object (SigV4 query string, valid for the link lifetime),
//!   or `public_base_url/key` when a public base URL (a CDN in front of the bucket) is configured.
//! * Local folder: `<files base URL>/v1/files/<token>`, served by the gateway. The token carries the
//!   key, content type and expiry, signed with HMAC-SHA256 under a secret shared by the orchestrator
//!   and the gateway (`ATELIER_LINK_SECRET`).
//!
//! Without a secret and base URL, local objects keep their `file://` URL (embedded single-machine use).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::presigning::PresigningConfig;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::{Storage, StorageError};

/// Default lifetime of a minted link.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(3600);
/// Longest lifetime S3 accepts for a presigned URL (SigV4: seven days).
pub const MAX_LINK_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Shortest secret accepted, in bytes.
pub const MIN_SECRET_BYTES: usize = 16;
/// Domain separation of the MAC, so the secret signs nothing else by accident.
const MAC_CONTEXT: &[u8] = b"atelier-file-link-v1\n";

/// Signs and checks the tokens of `/v1/files/{token}`.
#[derive(Clone)]
pub struct LinkSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(<redacted>)")
    }
}

/// What a valid token grants: one object, until a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileGrant {
    /// Storage key of the object.
    pub key: String,
    /// Content type to answer with.
    pub content_type: String,
    /// Unix seconds after which the link is refused.
    pub expires_at: u64,
}

/// Why a token is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a token this secret signed (garbled, tampered with, or signed with another secret).
    #[error("the link is not valid")]
    Invalid,
    /// Correctly signed but past its expiry.
    #[error("the link expired")]
    Expired {
        /// Unix seconds at which it expired.
        expired_at: u64,
    },
}

impl LinkSigner {
    /// A signer for `secret`; refuses secrets shorter than 16 bytes.
    pub fn new(secret: &str) -> Result<LinkSigner, StorageError> {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_BYTES {
            return Err(StorageError::Config(format!(
                "the link secret must be at least {MIN_SECRET_BYTES} bytes"
            )));
        }
        Ok(LinkSigner {
            secret: secret.as_bytes().to_vec(),
        })
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(MAC_CONTEXT);
        mac.update(payload);
        mac
    }

    /// The token for `grant`: `base64url(expiry \n content type \n key) . base64url(HMAC)`.
    pub fn mint(&self, grant: &FileGrant) -> String {
        let payload = format!(
            "{}\n{}\n{}",
            grant.expires_at, grant.content_type, grant.key
        );
        let tag = self.mac(payload.as_bytes()).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// Checks the signature first (a tampered token is [`TokenError::Invalid`] even when old), then
    /// the expiry against `now` (Unix seconds).
    pub fn verify(&self, token: &str, now: u64) -> Result<FileGrant, TokenError> {
        let (payload, tag) = token.split_once('.').ok_or(TokenError::Invalid)?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Invalid)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Invalid)?;
        // Constant-time comparison.
        self.mac(&payload)
            .verify_slice(&tag)
            .map_err(|_| TokenError::Invalid)?;
        let payload = String::from_utf8(payload).map_err(|_| TokenError::Invalid)?;
        let mut parts = payload.splitn(3, '\n');
        let (Some(expires_at), Some(content_type), Some(key)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Invalid);
        };
        let expires_at: u64 = expires_at.parse().map_err(|_| TokenError::Invalid)?;
        crate::key::validate(key).map_err(|_| TokenError::Invalid)?;
        if now >= expires_at {
            return Err(TokenError::Expired {
                expired_at: expires_at,
            });
        }
        Ok(FileGrant {
            key: key.to_owned(),
            content_type: content_type.to_owned(),
            expires_at,
        })
    }
}

/// Mints the links of stored objects.
#[derive(Clone, Debug)]
pub struct Links {
    storage: Storage,
    signer: Option<LinkSigner>,
    files_base_url: Option<url::Url>,
    ttl: Duration,
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Links {
    /// Links to objects of `storage`, valid for `ttl` (at most seven days). Local objects get
    /// gateway links when both `secret` and `files_base_url` are given.
    pub fn new(
        storage: Storage,
        secret: Option<&str>,
        files_base_url: Option<&str>,
        ttl: Duration,
    ) -> Result<Links, StorageError> {
        if ttl.is_zero() || ttl > MAX_LINK_TTL {
            return Err(StorageError::Config(format!(
                "link lifetime must be between 1 second and {} seconds",
                MAX_LINK_TTL.as_secs()
            )));
        }
        let signer = secret
            .filter(|s| !s.trim().is_empty())
            .map(LinkSigner::new)
            .transpose()?;
        let files_base_url = files_base_url
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|base| {
                let url = url::Url::parse(base).map_err(|err| {
                    StorageError::Config(format!("files base URL {base:?}: {err}"))
                })?;
                if matches!(url.scheme(), "http" | "https") && !url.cannot_be_a_base() {
                    Ok(url)
                } else {
                    Err(StorageError::Config(format!(
                        "files base URL {base:?} must be an http(s) URL"
                    )))
                }
            })
            .transpose()?;
        Ok(Links {
            storage,
            signer,
            files_base_url,
            ttl,
        })
    }

    /// The storage the links point into.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// How long a minted link stays valid.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A link to the object `key`, valid for the configured lifetime from now. Falls back to the
    /// storage's plain URL (logged) only when presigning itself fails.
    pub async fn url(&self, key: &str, content_type: &str) -> String {
        self.url_at(key, content_type, SystemTime::now()).await
    }

    /// A link as minted at `minted_at` (valid from then for the configured lifetime): tests mint
    /// links that already expired this way.
    pub async fn url_at(&self, key: &str, content_type: &str, minted_at: SystemTime) -> String {
        if key.is_empty() {
            return String::new();
        }
        match self.try_url(key, content_type, minted_at).await {
            Ok(url) => url,
            Err(err) => {
                tracing::warn!(key, error = %err, "cannot mint a link; answering the plain URL");
                self.storage.url(key)
            }
        }
    }

    async fn try_url(
        &self,
        key: &str,
        content_type: &str,
        minted_at: SystemTime,
    ) -> Result<String, StorageError> {
        crate::key::validate(key)?;
        match &self.storage {
            Storage::S3(store) => {
                if store.has_public_base_url() {
                    return Ok(store.url(key));
                }
                let config = PresigningConfig::builder()
                    .start_time(minted_at)
                    .expires_in(self.ttl)
                    .build()
                    .map_err(|err| StorageError::Config(format!("link lifetime: {err}")))?;
                store.presigned_get(key, config).await
            }
            Storage::LocalFs(store) => match (&self.signer, &self.files_base_url) {
                (Some(signer), Some(base)) => {
                    let token = signer.mint(&FileGrant {
                        key: key.to_owned(),
                        content_type: content_type.to_owned(),
                        expires_at: minted_at
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs())
                            .saturating_add(self.ttl.as_secs().max(1)),
                    });
                    Ok(files_url(base, &token))
                }
                _ => Ok(store.url(key)),
            },
        }
    }
}

/// `base/v1/files/token`, keeping any path of the base (a gateway behind a path prefix).
fn files_url(base: &url::Url, token: &str) -> String {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(["v1", "files", token]);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LinkSigner {
        LinkSigner::new("0123456789abcdef-test-secret").expect("signer")
    }

    fn grant() -> FileGrant {
        FileGrant {
            key: "jobs/j1/t1/out.png".into(),
            content_type: "image/png".into(),
            expires_at: 2_000,
        }
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let token = signer().mint(&grant());
        assert_eq!(signer().verify(&token, 1_999), Ok(grant()));
        assert_eq!(
            signer().verify(&token, 2_000),
            Err(TokenError::Expired { expired_at: 2_000 })
        );
    }

    #[test]
    fn tampered_or_foreign_tokens_are_invalid_even_when_expired() {
        let token = signer().mint(&grant());
        let (payload, tag) = token.split_once('.').expect("two parts");
        // Another key under the same tag.
        let forged = URL_SAFE_NO_PAD.encode("9999\nimage/png\njobs/other/secret.png");
        assert_eq!(
            signer().verify(&format!("{forged}.{tag}"), 0),
            Err(TokenError::Invalid)
        );
        // One flipped character of the tag.
        let mut bad_tag = tag.to_owned();
        let last = if bad_tag.ends_with('A') { "B" } else { "A" };
        bad_tag.replace_range(bad_tag.len() - 1.., last);
        assert_eq!(
            signer().verify(&format!("{payload}.{bad_tag}"), 0),
            Err(TokenError::Invalid)
        );
        // Signed with another secret: invalid, not expired, even long after.
        let other = LinkSigner::new("another-secret-of-16-bytes").expect("signer");
        assert_eq!(other.verify(&token, 5_000), Err(TokenError::Invalid));
        for garbage in ["", ".", "abc", "a.b.c", "%%%.%%%"] {
            assert_eq!(signer().verify(garbage, 0), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(LinkSigner::new("short").is_err());
    }

    #[test]
    fn files_urls_keep_the_base_path() {
        let base = url::Url::parse("https://api.example/atelier/").expect("url");
        assert_eq!(
            files_url(&base, "abc.def"),
            "https://api.example/atelier/v1/files/abc.def"
        );
    }
}
