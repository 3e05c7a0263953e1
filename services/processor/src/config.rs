//! Start-up configuration: command-line flags, each also read from an `ATELIER_*` environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use atelier_matting::ModelSpec;
use atelier_storage::S3Options;

use crate::download::IpNet;
use crate::providers::{
    parse_model_list, Protocol, ProviderConfig, ProvidersFile, Secret, DEFAULT_MAX_CONCURRENCY,
};

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

    /// How to reach an S3-compatible store (`--s3-*`), when storage is `s3://…`.
    #[command(flatten)]
    pub s3: S3Options,

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

    /// Seconds an output write is tried again while the object store fails, before the attempt
    /// fails with 3009 STORAGE_FAILED (which the orchestrator retries); 0 writes once.
    #[arg(long, env = "ATELIER_STORAGE_RETRY", default_value = "10", value_parser = parse_seconds)]
    pub storage_retry: Duration,

    /// Log output format.
    #[arg(long, env = "ATELIER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Reuse results of identical tasks of the same tenant through the object storage (SPEC §4 Cache).
    #[arg(long, env = "ATELIER_CONTENT_CACHE", default_value_t = true, action = clap::ArgAction::Set)]
    pub content_cache: bool,

    /// Address of the Prometheus endpoint, `GET /metrics` (port 0 picks a free port).
    #[arg(
        long,
        env = "ATELIER_PROCESSOR_METRICS_LISTEN",
        default_value = "127.0.0.1:9101"
    )]
    pub metrics_listen: SocketAddr,

    /// Model providers file: TOML, or JSON when the name ends in `.json` (see the README).
    #[arg(long, env = "ATELIER_PROVIDERS_FILE")]
    pub providers_file: Option<PathBuf>,

    /// A single provider without a file: its base URL, e.g. https://api.openai.com/v1 (openai),
    /// https://api.remove.bg (removebg) or http://rembg:7000 (rembg).
    #[arg(long, env = "ATELIER_PROVIDER_BASE_URL")]
    pub provider_base_url: Option<String>,

    /// The single provider's API: openai (edit, generate, pose_set), or removebg or rembg
    /// (basic_clean's matting).
    #[arg(long, env = "ATELIER_PROVIDER_PROTOCOL", value_enum, default_value_t = Protocol::OpenAi)]
    pub provider_protocol: Protocol,

    /// The single provider's API key.
    #[arg(long, env = "ATELIER_PROVIDER_API_KEY", hide_env_values = true)]
    pub provider_api_key: Option<Secret>,

    /// The single provider's name.
    #[arg(long, env = "ATELIER_PROVIDER_NAME", default_value = "default")]
    pub provider_name: String,

    /// The single provider's models, `id=kind+kind` comma-separated (kinds: edit, generate, pose_set
    /// for openai; basic_clean for removebg and rembg).
    #[arg(long, env = "ATELIER_PROVIDER_MODELS", value_delimiter = ',')]
    pub provider_models: Vec<String>,

    /// The single provider's limit of calls in flight at once.
    #[arg(long, env = "ATELIER_PROVIDER_MAX_CONCURRENCY", default_value_t = DEFAULT_MAX_CONCURRENCY,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub provider_max_concurrency: u32,

    /// Providers given in code (tests and embedding), used together with the file and the flags.
    #[arg(skip)]
    pub providers: Vec<ProviderConfig>,

    /// A segmentation model for basic_clean, `FAMILY:PATH` (family isnet, u2net or birefnet;
    /// named after its file); repeat or comma-separate for more, the first is the default.
    #[arg(
        long = "matting-model",
        env = "ATELIER_MATTING_MODEL",
        value_delimiter = ','
    )]
    pub matting_models: Vec<ModelSpec>,

    /// ONNX Runtime's shared library, loaded when a matting model is configured
    /// (scripts/install-onnxruntime.sh puts one here).
    #[arg(
        long,
        env = "ATELIER_ONNXRUNTIME",
        default_value = "var/onnxruntime/libonnxruntime.so"
    )]
    pub onnxruntime: PathBuf,

    /// Matting model runs at once, per model (each holds its own session and memory).
    #[arg(long, env = "ATELIER_MATTING_CONCURRENCY", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=64))]
    pub matting_concurrency: u32,

    /// Threads of each matting run (ONNX Runtime intra-op threads); 0 uses one per core.
    #[arg(long, env = "ATELIER_MATTING_THREADS", default_value_t = 0)]
    pub matting_threads: u32,
}

/// SPEC §4: at most 10 MiB per source.
pub const DEFAULT_MAX_SOURCE_BYTES: u64 = 10 * 1024 * 1024;

/// How long an output write is retried by default. With the orchestrator's three attempts and
/// their backoff, a store that is down for 20 s costs a task one failed attempt, not the task.
pub const DEFAULT_STORAGE_RETRY: Duration = Duration::from_secs(10);

impl Config {
    /// A configuration with every default, for tests and embedding: listens on 127.0.0.1:0.
    pub fn new(service_token: impl Into<String>, storage: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            service_token: service_token.into(),
            storage: storage.into(),
            s3: S3Options::default(),
            max_concurrency: default_concurrency(),
            processor_id: None,
            allow_private_sources: Vec::new(),
            download_connect_timeout: Duration::from_secs(5),
            download_timeout: Duration::from_secs(30),
            max_source_bytes: DEFAULT_MAX_SOURCE_BYTES,
            storage_retry: DEFAULT_STORAGE_RETRY,
            log_format: LogFormat::Text,
            content_cache: true,
            metrics_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            providers_file: None,
            provider_base_url: None,
            provider_protocol: Protocol::OpenAi,
            provider_api_key: None,
            provider_name: "default".into(),
            provider_models: Vec::new(),
            provider_max_concurrency: DEFAULT_MAX_CONCURRENCY,
            providers: Vec::new(),
            matting_models: Vec::new(),
            onnxruntime: PathBuf::from("var/onnxruntime/libonnxruntime.so"),
            matting_concurrency: 1,
            matting_threads: 0,
        }
    }

    /// Every configured provider, validated: those given in code, the file's, then the single one
    /// from flags; names must be unique.
    pub fn provider_configs(&self) -> Result<Vec<ProviderConfig>, String> {
        let mut all = self.providers.clone();
        if let Some(path) = &self.providers_file {
            all.extend(ProvidersFile::read(path)?.providers);
        }
        if let Some(base_url) = self
            .provider_base_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        {
            let models = parse_model_list(&self.provider_models)?;
            if models.is_empty() {
                return Err(
                    "--provider-models (ATELIER_PROVIDER_MODELS) must list the provider's models, \
                     e.g. gpt-image-1=edit+generate+pose_set"
                        .into(),
                );
            }
            let mut single = ProviderConfig::new(&self.provider_name, base_url, None, models);
            single.protocol = self.provider_protocol;
            single.api_key = self.provider_api_key.clone();
            single.max_concurrency = self.provider_max_concurrency;
            all.push(single);
        }
        let all = all
            .into_iter()
            .map(ProviderConfig::validated)
            .collect::<Result<Vec<_>, _>>()?;
        let mut names = std::collections::HashSet::new();
        for provider in &all {
            if !names.insert(provider.name.as_str()) {
                return Err(format!(
                    "two providers are named `{}`; names must be unique",
                    provider.name
                ));
            }
        }
        Ok(all)
    }

    /// The S3 options these flags describe.
    pub fn s3_options(&self) -> S3Options {
        self.s3.clone()
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
        assert_eq!(config.storage_retry, Duration::from_secs(10));
        assert!(config.max_concurrency >= 1);
        let no_retry = Config::try_parse_from([
            "atelier-processor",
            "--service-token",
            "secret",
            "--storage-retry",
            "0",
        ])
        .expect("valid flags");
        assert_eq!(no_retry.storage_retry, Duration::ZERO);
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
    fn a_single_provider_comes_from_flags() {
        let config = Config::try_parse_from([
            "p",
            "--service-token",
            "t",
            "--provider-base-url",
            "https://api.example.com/v1",
            "--provider-api-key",
            "sk-do-not-print",
            "--provider-models",
            "gpt-image-1=edit+generate,sdxl=generate",
        ])
        .expect("valid flags");
        assert_eq!(config.metrics_listen.port(), 9101);
        assert!(config.content_cache);
        assert!(!format!("{config:?}").contains("sk-do-not-print"));
        let providers = config.provider_configs().expect("valid provider");
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].name, "default");
        assert_eq!(providers[0].max_concurrency, 3);
        assert_eq!(providers[0].models.len(), 2);

        let mut no_models = config.clone();
        no_models.provider_models.clear();
        assert!(no_models.provider_configs().is_err());
        let mut twice = config.clone();
        twice.providers = providers;
        assert!(twice
            .provider_configs()
            .expect_err("dup")
            .contains("unique"));
    }

    #[test]
    fn a_single_matting_provider_comes_from_flags() {
        let config = Config::try_parse_from([
            "p",
            "--service-token",
            "t",
            "--provider-base-url",
            "https://api.remove.bg",
            "--provider-protocol",
            "removebg",
            "--provider-api-key",
            "rb-key",
            "--provider-models",
            "remove.bg=basic_clean",
        ])
        .expect("valid flags");
        let providers = config.provider_configs().expect("valid provider");
        assert_eq!(providers[0].protocol, Protocol::RemoveBg);
        assert_eq!(providers[0].models[0].id, "remove.bg");
        let mut keyless = config;
        keyless.provider_api_key = None;
        assert!(keyless.provider_configs().is_err());
        assert!(Config::try_parse_from([
            "p",
            "--service-token",
            "t",
            "--provider-protocol",
            "paint"
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
