//! Building and running the gateway: bind, connect (lazily) to the orchestrator, serve until cancelled.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use atelier_telemetry::service::ServiceHandle;
use axum::http::{header, HeaderName, HeaderValue, Method};
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;
use tower_http::cors::{AllowOrigin, CorsLayer};

use atelier_netguard::download::{DownloadLimits, Downloader};

use crate::compat::jwt::CompatAuth;
use crate::config::Config;
use crate::request_id;
use crate::router;
use crate::routes;
use crate::state::{AppState, Limits};

/// How long open streams (SSE) may keep a stopping gateway alive.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// A gateway bound to its port, ready to serve.
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    /// Binds the port and prepares the routes; the orchestrator is connected on first use, so the
    /// gateway starts (and `/healthz` answers 503) while the orchestrator is still down.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        Self::build_on(config, listener).await
    }

    /// As [`build`](Self::build), on a listener bound already (its address can then be handed to
    /// the orchestrator as the base of file links before the gateway exists).
    pub async fn build_on(config: Config, listener: TcpListener) -> anyhow::Result<Self> {
        let endpoint = Endpoint::from_shared(config.orchestrator.clone())
            .with_context(|| format!("orchestrator address `{}`", config.orchestrator))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        let files =
            routes::files::file_server(config.storage.as_deref(), config.link_secret.as_deref())
                .await
                .context("file links")?;
        let mut state = AppState::new(
            channel,
            Limits {
                max_json_bytes: config.max_json_bytes,
                max_upload_bytes: config.max_upload_bytes,
                keep_alive: config.sse_keep_alive,
                generator_per_minute: config.generator_requests_per_minute,
            },
            proxy_downloader(&config)?,
        );
        state.files = files;
        let auth = CompatAuth::load(
            config.compat_jwt_secret.as_deref(),
            config.compat_api_key.as_deref(),
            config.compat_auth.as_deref(),
        )
        .await?;
        let mut router = router::router(state, &auth);
        if let Some(cors) = cors(&config.cors_origins)? {
            router = router.layer(cors);
        }
        let router = router.layer(axum::middleware::from_fn(request_id::layer));
        Ok(Self { listener, router })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// Serves until `shutdown` is cancelled, then lets requests finish for a short grace period.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let stopping = shutdown.clone();
        let serve = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move { stopping.cancelled().await });
        let grace = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            served = serve => served.context("serving HTTP"),
            () = grace => {
                tracing::info!("open streams did not end within the grace period; stopping anyway");
                Ok(())
            }
        }
    }
}

/// The studio proxy's guarded downloader: SPEC §4's limits, the upload cap as its size cap.
fn proxy_downloader(config: &Config) -> anyhow::Result<Downloader> {
    Downloader::new(
        config.proxy_allow_nets.clone(),
        DownloadLimits {
            connect_timeout: Duration::from_secs(10),
            total_timeout: Duration::from_secs(30),
            max_bytes: config.max_upload_bytes,
        },
    )
    .context("the studio proxy's HTTP client")
}

fn cors(origins: &[String]) -> anyhow::Result<Option<CorsLayer>> {
    let origins: Vec<&str> = origins
        .iter()
        .map(|o| o.trim())
        .filter(|o| !o.is_empty())
        .collect();
    if origins.is_empty() {
        return Ok(None);
    }
    let allow = if origins.contains(&"*") {
        AllowOrigin::any()
    } else {
        let values = origins
            .iter()
            .map(|o| HeaderValue::from_str(o).with_context(|| format!("CORS origin `{o}`")))
            .collect::<anyhow::Result<Vec<_>>>()?;
        AllowOrigin::list(values)
    };
    Ok(Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("x-atelier-account"),
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("traceparent"),
                HeaderName::from_static(request_id::HEADER),
            ])
            .expose_headers([HeaderName::from_static(request_id::HEADER)])
            .max_age(Duration::from_secs(600)),
    ))
}

/// A gateway serving in the background (tests and embedding); stops when dropped. It has no
/// metrics endpoint of its own (`metrics_addr()` is `None`).
pub type RunningGateway = ServiceHandle<anyhow::Error>;

/// Builds and starts a gateway in the background.
pub async fn spawn(config: Config) -> anyhow::Result<RunningGateway> {
    start(Application::build(config).await?)
}

/// Builds and starts a gateway in the background on a listener bound already.
pub async fn spawn_on(config: Config, listener: TcpListener) -> anyhow::Result<RunningGateway> {
    start(Application::build_on(config, listener).await?)
}

fn start(app: Application) -> anyhow::Result<RunningGateway> {
    let shutdown = CancellationToken::new();
    Ok(ServiceHandle::spawn(
        app.local_addr(),
        None,
        shutdown.clone(),
        app.run_until_stopped(shutdown),
    ))
}
