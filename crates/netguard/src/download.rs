//! The guarded downloader: fetches an image over http(s) within SPEC §4's timeouts, redirect and size
//! limits, with every hop's address checked. The processor fetches sources with it, the gateway's
//! studio proxy fetches what a browser asks it to.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::header::{CONTENT_LENGTH, LOCATION};
use reqwest::StatusCode;
use url::Url;

pub use crate::{non_public_reason, AddressPolicy, BlockedHost, IpNet, Reason};

/// At most this many redirects are followed (SPEC §4).
pub const MAX_REDIRECTS: usize = 3;

/// Why a download failed; each caller maps it to a status in one place (the processor's `ProcessError`).
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// Not a URL at all.
    #[error("source URL is not valid: {0}")]
    InvalidUrl(String),
    /// A scheme other than http or https.
    #[error("source URL scheme `{0}` is not allowed; use http or https")]
    UnsupportedScheme(String),
    /// The URL (or a redirect) points at a non-public address.
    #[error("source address {addr} is {reason}, which is not allowed")]
    BlockedAddress {
        /// The refused address as written or resolved.
        addr: String,
        /// Which kind of range it is in.
        reason: Reason,
    },
    /// A host name resolved only to non-public addresses.
    #[error(transparent)]
    BlockedHost(#[from] BlockedHost),
    /// More than [`MAX_REDIRECTS`] redirects.
    #[error("source redirected more than {MAX_REDIRECTS} times")]
    TooManyRedirects,
    /// A redirect without a usable Location.
    #[error("source answered {0} without a usable Location header")]
    BadRedirect(u16),
    /// The source answered with a non-success status.
    #[error("source answered HTTP {0}")]
    Status(u16),
    /// The body is, or announced to be, larger than the cap.
    #[error("source is larger than the limit of {}", human_bytes(*limit))]
    TooLarge {
        /// The cap in bytes.
        limit: u64,
    },
    /// The whole download took longer than the configured total timeout.
    #[error("source download timed out after {0:?}")]
    Timeout(Duration),
    /// Connecting or reading failed (refused, reset, TLS, connect timeout).
    #[error("source download failed: {0}")]
    Network(String),
}

impl DownloadError {
    /// Whether another attempt may succeed (5xx, timeouts, network errors).
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Status(code) => *code >= 500,
            Self::Timeout(_) | Self::Network(_) => true,
            _ => false,
        }
    }
}

/// Limits of a [`Downloader`].
#[derive(Clone, Debug)]
pub struct DownloadLimits {
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Time for the whole download, redirects and body included.
    pub total_timeout: Duration,
    /// Largest body accepted.
    pub max_bytes: u64,
}

/// A shared http client that only reaches allowed addresses.
#[derive(Clone, Debug)]
pub struct Downloader {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    limits: DownloadLimits,
}

impl Downloader {
    /// A downloader allowing the given private networks on top of public addresses.
    pub fn new(allowed: Vec<IpNet>, limits: DownloadLimits) -> Result<Self, DownloadError> {
        let policy = Arc::new(AddressPolicy::new(allowed));
        let client = crate::client_builder(Arc::clone(&policy))
            .connect_timeout(limits.connect_timeout)
            .user_agent(concat!("atelier/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| DownloadError::Network(format!("cannot build http client: {e}")))?;
        Ok(Self {
            client,
            policy,
            limits,
        })
    }

    /// Downloads `url`, following at most [`MAX_REDIRECTS`] checked redirects, within the limits.
    pub async fn fetch(&self, url: &str) -> Result<Bytes, DownloadError> {
        let url = Url::parse(url).map_err(|e| DownloadError::InvalidUrl(e.to_string()))?;
        let total = self.limits.total_timeout;
        tokio::time::timeout(total, self.fetch_following(url))
            .await
            .map_err(|_| DownloadError::Timeout(total))?
    }

    async fn fetch_following(&self, mut url: Url) -> Result<Bytes, DownloadError> {
        for _hop in 0..=MAX_REDIRECTS {
            self.check_url(&url)?;
            let response = self
                .client
                .get(url.clone())
                .send()
                .await
                .map_err(classify)?;
            let status = response.status();
            if status.is_redirection() && status != StatusCode::NOT_MODIFIED {
                url = next_hop(&url, &response)?;
                continue;
            }
            if !status.is_success() {
                return Err(DownloadError::Status(status.as_u16()));
            }
            return self.read_capped(response).await;
        }
        Err(DownloadError::TooManyRedirects)
    }

    /// Scheme and IP-literal checks; reqwest skips the resolver for IP literals, so they are checked here.
    fn check_url(&self, url: &Url) -> Result<(), DownloadError> {
        crate::check_url(&self.policy, url).map_err(|refused| match refused {
            crate::Refused::Scheme(scheme) => DownloadError::UnsupportedScheme(scheme),
            crate::Refused::NoHost => DownloadError::InvalidUrl("the URL has no host".into()),
            crate::Refused::Address { addr, reason } => {
                DownloadError::BlockedAddress { addr, reason }
            }
        })
    }

    async fn read_capped(&self, mut response: reqwest::Response) -> Result<Bytes, DownloadError> {
        let limit = self.limits.max_bytes;
        let announced = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if announced.is_some_and(|len| len > limit) {
            return Err(DownloadError::TooLarge { limit });
        }
        let capacity = announced.unwrap_or(64 * 1024).min(limit);
        let mut body = BytesMut::with_capacity(usize::try_from(capacity).unwrap_or(0));
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            if (body.len() as u64).saturating_add(chunk.len() as u64) > limit {
                return Err(DownloadError::TooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }
}

/// "10 MiB", "1.5 KiB", "700 bytes".
fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * KIB;
    match n {
        n if n >= MIB && n % MIB == 0 => format!("{} MiB", n / MIB),
        n if n >= MIB => format!("{:.1} MiB", n as f64 / MIB as f64),
        n if n >= KIB && n % KIB == 0 => format!("{} KiB", n / KIB),
        n if n >= KIB => format!("{:.1} KiB", n as f64 / KIB as f64),
        n => format!("{n} bytes"),
    }
}

fn next_hop(current: &Url, response: &reqwest::Response) -> Result<Url, DownloadError> {
    let code = response.status().as_u16();
    let location = response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(DownloadError::BadRedirect(code))?;
    current
        .join(location)
        .map_err(|_| DownloadError::BadRedirect(code))
}

/// Turns a reqwest error into ours, finding a refused DNS answer in its source chain.
fn classify(err: reqwest::Error) -> DownloadError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = source {
        if let Some(blocked) = e.downcast_ref::<BlockedHost>() {
            return DownloadError::BlockedHost(BlockedHost {
                host: blocked.host.clone(),
                addr: blocked.addr,
                reason: blocked.reason,
            });
        }
        source = e.source();
    }
    let kind = if err.is_connect() {
        "could not connect"
    } else if err.is_timeout() {
        "timed out"
    } else if err.is_body() || err.is_decode() {
        "reading the body failed"
    } else {
        "request failed"
    };
    DownloadError::Network(format!("{kind}: {}", error_chain(&err)))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_person_wrote_them() {
        assert_eq!(human_bytes(10 * 1024 * 1024), "10 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(700), "700 bytes");
        assert_eq!(
            DownloadError::TooLarge {
                limit: 10 * 1024 * 1024
            }
            .to_string(),
            "source is larger than the limit of 10 MiB"
        );
    }

    #[test]
    fn only_5xx_and_network_failures_are_transient() {
        assert!(DownloadError::Status(503).is_transient());
        assert!(!DownloadError::Status(404).is_transient());
        assert!(!DownloadError::Status(410).is_transient());
        assert!(DownloadError::Timeout(Duration::from_secs(30)).is_transient());
        assert!(DownloadError::Network("reset".into()).is_transient());
        assert!(!DownloadError::TooManyRedirects.is_transient());
        assert!(!DownloadError::TooLarge { limit: 1 }.is_transient());
    }
}
