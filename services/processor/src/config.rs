//! Start-up configuration: command-line flags, each also read from an `ATELIER_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

use atelier_storage::S3Options;

use crate::download::IpNet;

pub use atelier_telemetry::LogFormat;

/// Everything the processor needs to start.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "atelier-processor",
    version,
    about = "Atelier image-processor: download, engine, upload"
)]
pub struct Config {
    /// Address the gRPC server listens on (port 0 picks a free port).
    #[arg(long, env = "ATELIER_LISTEN", default_value = "127.0.0.1:50052")]
    pub listen: SocketAddr,

    /// Token the orchestrator sends as `x-api-key`.
    #[arg(long, env = "ATELIER_SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: String,

    /// Object storage: a local folder, or `s3://bucket[/prefix]`.
    #[arg(long, env = "ATELIER_STORAGE", default_value = "var/objects")]
    pub storage: String,

    /// S3 endpoint URL (R2, MinIO, Garage…); empty uses AWS.
    #[arg(long, env = "ATELIER_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// S3 region.
    #[arg(long, env = "ATELIER_S3_REGION")]
    pub s3_region: Option<String>,

    /// Use path-style S3 addresses (`endpoint/bucket/key`).
    #[arg(long, env = "ATELIER_S3_PATH_STYLE")]
    pub s3_path_style: bool,

    /// S3 access key id.
    #[arg(long, env = "ATELIER_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// S3 secret access key.
    #[arg(long, env = "ATELIER_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Public base URL of the bucket, used to build output URLs.
    #[arg(long, env = "ATELIER_S3_PUBLIC_BASE_URL")]
    pub s3_public_base_url: Option<String>,

    /// Tasks run at once before answering RESOURCE_EXHAUSTED.
    #[arg(long, env = "ATELIER_MAX_CONCURRENCY", default_value_t = default_concurrency(),
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrency: u32,

    /// Name reported in `Accepted` and `GetCapabilities`; defaults to hostname-pid.
    #[arg(long, env = "ATELIER_PROCESSOR_ID")]
    pub processor_id: Option<String>,

    /// Private or loopback networks sources may still come from, comma-separated (e.g. 127.0.0.1/32).
    #[arg(long, env = "ATELIER_ALLOW_PRIVATE_SOURCES", value_delimiter = ',')]
    pub allow_private_sources: Vec<IpNet>,

    /// Seconds to wait for a source's TCP/TLS connection.
    #[arg(long, env = "ATELIER_DOWNLOAD_CONNECT_TIMEOUT", default_value = "5", value_parser = parse_seconds)]
    pub download_connect_timeout: Duration,

    /// Seconds a whole download may take, redirects and body included.
    #[arg(long, env = "ATELIER_DOWNLOAD_TIMEOUT", default_value = "30", value_parser = parse_seconds)]
    pub download_timeout: Duration,

    /// Largest source accepted, in bytes.
    #[arg(long, env = "ATELIER_MAX_SOURCE_BYTES", default_value_t = DEFAULT_MAX_SOURCE_BYTES)]
    pub max_source_bytes: u64,

    /// Log output format.
    #[arg(long, env = "ATELIER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// SPEC §4: at most 10 MiB per source.
pub const DEFAULT_MAX_SOURCE_BYTES: u64 = 10 * 1024 * 1024;

impl Config {
    /// A configuration with every default, for tests and embedding: listens on 127.0.0.1:0.
    pub fn new(service_token: impl Into<String>, storage: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            service_token: service_token.into(),
            storage: storage.into(),
            s3_endpoint: None,
            s3_region: None,
            s3_path_style: false,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_public_base_url: None,
            max_concurrency: default_concurrency(),
            processor_id: None,
            allow_private_sources: Vec::new(),
            download_connect_timeout: Duration::from_secs(5),
            download_timeout: Duration::from_secs(30),
            max_source_bytes: DEFAULT_MAX_SOURCE_BYTES,
            log_format: LogFormat::Text,
        }
    }

    /// The S3 options these flags describe.
    pub fn s3_options(&self) -> S3Options {
        S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            path_style: self.s3_path_style,
            access_key_id: self.s3_access_key_id.clone(),
            secret_access_key: self.s3_secret_access_key.clone(),
            public_base_url: self.s3_public_base_url.clone(),
        }
    }

    /// The processor id: the configured one, else `hostname-pid`, else a random uuid.
    pub fn resolved_processor_id(&self) -> String {
        if let Some(id) = self
            .processor_id
            .as_deref()
            .filter(|id| !id.trim().is_empty())
        {
            return id.to_string();
        }
        match hostname() {
            Some(host) => format!("{host}-{}", std::process::id()),
            None => uuid::Uuid::new_v4().to_string(),
        }
    }
}

fn hostname() -> Option<String> {
    let from_env = std::env::var("HOSTNAME").ok();
    let from_file = || std::fs::read_to_string("/etc/hostname").ok();
    from_env
        .or_else(from_file)
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

fn default_concurrency() -> u32 {
    std::thread::available_parallelism()
        .map(|n| u32::try_from(n.get()).unwrap_or(u32::MAX))
        .unwrap_or(1)
}

/// Parses a non-negative, finite number of seconds such as `5` or `0.5`.
fn parse_seconds(value: &str) -> Result<Duration, String> {
    let seconds: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("`{value}` is not a usable number of seconds"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn flags_parse_with_defaults() {
        let config = Config::try_parse_from([
            "atelier-processor",
            "--service-token",
            "secret",
            "--allow-private-sources",
            "127.0.0.1/32,10.0.0.0/8",
            "--download-timeout",
            "1.5",
        ])
        .expect("valid flags");
        assert_eq!(config.listen, "127.0.0.1:50052".parse().expect("addr"));
        assert_eq!(config.storage, "var/objects");
        assert_eq!(config.allow_private_sources.len(), 2);
        assert_eq!(config.download_timeout, Duration::from_millis(1500));
        assert_eq!(config.download_connect_timeout, Duration::from_secs(5));
        assert_eq!(config.max_source_bytes, 10 * 1024 * 1024);
        assert!(config.max_concurrency >= 1);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("soon").is_err());
        assert!(
            Config::try_parse_from(["p", "--service-token", "t", "--max-concurrency", "0"])
                .is_err()
        );
        assert!(Config::try_parse_from([
            "p",
            "--service-token",
            "t",
            "--allow-private-sources",
            "10.0.0.0/99"
        ])
        .is_err());
    }

    #[test]
    fn processor_id_prefers_the_configured_one() {
        let mut config = Config::new("t", "var/objects");
        config.processor_id = Some("proc-a".into());
        assert_eq!(config.resolved_processor_id(), "proc-a");
        config.processor_id = None;
        assert!(!config.resolved_processor_id().is_empty());
    }
}
