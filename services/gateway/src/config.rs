//! Start-up configuration: command-line flags, each also read from an `ATELIER_*` environment variable.

use std::net::SocketAddr;
use std::time::Duration;

pub use atelier_telemetry::LogFormat;

/// Everything the gateway needs to start.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "atelier-gateway",
    version,
    about = "Atelier REST gateway: HTTP/JSON and SSE over the orchestrator's gRPC"
)]
pub struct Config {
    /// Address the HTTP server listens on (port 0 picks a free port).
    #[arg(long, env = "ATELIER_GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The orchestrator's gRPC address.
    #[arg(
        long,
        env = "ATELIER_ORCHESTRATOR",
        default_value = "http://127.0.0.1:50051"
    )]
    pub orchestrator: String,

    /// Origins browsers may call from, comma-separated; `*` allows any; empty sends no CORS headers.
    #[arg(long, env = "ATELIER_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Largest JSON request body, in bytes.
    #[arg(long, env = "ATELIER_MAX_JSON_BYTES", default_value_t = 1024 * 1024)]
    pub max_json_bytes: usize,

    /// Largest upload, in bytes, counted while it streams.
    #[arg(long, env = "ATELIER_MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_upload_bytes: u64,

    /// Seconds between keep-alive comments on idle event streams.
    #[arg(long, env = "ATELIER_SSE_KEEP_ALIVE", default_value = "15", value_parser = parse_seconds)]
    pub sse_keep_alive: Duration,

    /// Requests a minute one key may make on seed 002's routes (`/api/v1/generate`, …); 0 turns the
    /// limit off. Past it they answer 429 with `Retry-After`, as that service did.
    #[arg(
        long,
        env = "ATELIER_GENERATOR_REQUESTS_PER_MINUTE",
        default_value_t = 60
    )]
    pub generator_requests_per_minute: u32,

    /// The HS256 secret the replaced systems signed their users' JWTs with. With
    /// `--compat-api-key`, the compatibility routes accept those tokens: a valid one acts as the
    /// account its `sub` (or `userId`, `user_id`, `uid`) names. Environment only, so it stays out
    /// of `ps`.
    #[arg(long, env = "ATELIER_COMPAT_JWT_SECRET", hide_env_values = true)]
    pub compat_jwt_secret: Option<String>,

    /// The tenant-wide Atelier API key that callers authenticated by a JWT act through.
    #[arg(long, env = "ATELIER_COMPAT_API_KEY", hide_env_values = true)]
    pub compat_api_key: Option<String>,

    /// A JSON file of per-family authentication (`image_editor`, `task_api`, `generator`,
    /// `image_edit`): each family's key, HS256 secret, RS256 JWKS file or URL, issuer, audience and,
    /// for the generator whose seed had no authentication, the account keyless callers act as. A
    /// family named here ignores `--compat-jwt-secret`.
    #[arg(long, env = "ATELIER_COMPAT_AUTH")]
    pub compat_auth: Option<std::path::PathBuf>,

    /// The local storage folder shared with the orchestrator and processors, whose objects
    /// `/v1/files/{token}` serves; `s3://…` storage gets presigned links and needs nothing here.
    #[arg(long, env = "ATELIER_STORAGE")]
    pub storage: Option<String>,

    /// Secret checking `/v1/files/{token}` links: the orchestrator's `ATELIER_LINK_SECRET`.
    #[arg(long, env = "ATELIER_LINK_SECRET", hide_env_values = true)]
    pub link_secret: Option<String>,

    /// Private networks the studio proxy (`/api/image-studio/proxy`) may fetch from, comma-separated
    /// CIDRs (e.g. `10.0.0.0/8`); public addresses are always allowed, others never unless named here.
    #[arg(long, env = "ATELIER_PROXY_ALLOW_NETS", value_delimiter = ',')]
    pub proxy_allow_nets: Vec<atelier_netguard::IpNet>,

    /// Log output format.
    #[arg(long, env = "ATELIER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl Config {
    /// Defaults in front of `orchestrator`, listening on 127.0.0.1:0.
    pub fn new(orchestrator: impl Into<String>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            orchestrator: orchestrator.into(),
            cors_origins: Vec::new(),
            max_json_bytes: 1024 * 1024,
            max_upload_bytes: 10 * 1024 * 1024,
            sse_keep_alive: Duration::from_secs(15),
            generator_requests_per_minute: 60,
            compat_jwt_secret: None,
            compat_api_key: None,
            compat_auth: None,

            storage: None,
            link_secret: None,
            proxy_allow_nets: Vec::new(),
            log_format: LogFormat::Text,
        }
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0) {
        return Err("give 0 < seconds <= 3600".to_string());
    }
    Ok(Duration::from_secs_f64(seconds))
}
