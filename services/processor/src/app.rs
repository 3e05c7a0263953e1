//! Start-up: bind, open storage, assemble the gRPC server (auth, health, reflection) and serve until told
//! to stop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use atelier_engine::Limits;
use atelier_proto::v1::processor_service_server::{ProcessorServiceServer, SERVICE_NAME};
use atelier_storage::{Storage, StorageError};
use atelier_telemetry::service::{ServiceHandle, Tasks};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::{Router, TcpIncoming};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use prometheus_client::registry::Registry;

use crate::auth::ServiceToken;
use crate::cache::{ContentCache, Inflight};
use crate::config::Config;
use crate::download::{DownloadLimits, Downloader};
use crate::matting::MattingModels;
use crate::metrics::Metrics;
use crate::process::{ProcessorApi, Shared};
use crate::providers::Providers;

/// Why the processor could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The object storage could not be opened.
    #[error("cannot open storage: {0}")]
    Storage(#[from] StorageError),
    /// A gRPC component could not be built.
    #[error("cannot build the gRPC server: {0}")]
    Server(String),
    /// The server failed while running.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The task serving the processor panicked or was aborted.
    #[error("server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// How long the background tasks (metrics, readiness) may take to end once serving has stopped.
const TASKS_GRACE: Duration = Duration::from_secs(10);

/// A processor that is bound and ready to serve.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics_listener: TcpListener,
    metrics_addr: SocketAddr,
    registry: Arc<Registry>,
    router: Router,
    health: HealthReporter,
    storage: Storage,
    ready: bool,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("local_addr", &self.local_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("ready", &self.ready)
            .finish()
    }
}

impl Application {
    /// Binds the listener, opens storage and assembles the services; does not serve yet.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        if config.service_token.is_empty() {
            return Err(StartError::Config(
                "the service token must not be empty".into(),
            ));
        }
        let storage = Storage::open(&config.storage, &config.s3_options()).await?;
        let downloader = Downloader::new(
            config.allow_private_sources.clone(),
            DownloadLimits {
                connect_timeout: config.download_connect_timeout,
                total_timeout: config.download_timeout,
                max_bytes: config.max_source_bytes,
            },
        )
        .map_err(|e| StartError::Config(e.to_string()))?;
        let (metrics, registry) = Metrics::new();
        let metrics = Arc::new(metrics);
        let provider_configs = config.provider_configs().map_err(StartError::Config)?;
        for p in &provider_configs {
            let models: Vec<&str> = p.models.iter().map(|m| m.id.as_str()).collect();
            // The key is never logged; only whether there is one.
            tracing::info!(provider = %p.name, protocol = p.protocol.as_str(),
                base_url = %p.base_url, models = ?models,
                max_concurrency = p.max_concurrency, has_api_key = p.api_key.is_some(),
                "model provider configured");
        }
        let providers = Providers::new(provider_configs, &downloader, &metrics)
            .map_err(|e| StartError::Config(e.to_string()))?;
        let matting = {
            let (specs, runtime) = (config.matting_models.clone(), config.onnxruntime.clone());
            let (sessions, threads) = (
                config.matting_concurrency as usize,
                config.matting_threads as usize,
            );
            // Loading and warming a model takes seconds of CPU: off the async threads.
            tokio::task::spawn_blocking(move || {
                MattingModels::load(&specs, &runtime, sessions, threads)
            })
            .await
            .map_err(|e| StartError::Config(format!("loading matting models: {e}")))?
            .map_err(StartError::Config)?
        };
        let shared = Shared {
            storage: storage.clone(),
            downloader,
            processor_id: config.resolved_processor_id(),
            max_source_bytes: config.max_source_bytes,
            storage_retry: config.storage_retry,
            limits: Limits::default(),
            providers,
            matting: Arc::new(matting),
            cache: config
                .content_cache
                .then(|| ContentCache::new(storage.clone())),
            inflight: Arc::new(Inflight::default()),
            metrics,
        };
        let api = ProcessorApi::new(shared, config.max_concurrency);
        let processor =
            ProcessorServiceServer::with_interceptor(api, ServiceToken::new(&config.service_token));

        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        health
            .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
            .await;
        let ready = match storage.check().await {
            Ok(()) => {
                set_serving(&health).await;
                true
            }
            Err(err) => {
                tracing::warn!(error = %err, "storage is not reachable yet; health stays NOT_SERVING");
                false
            }
        };

        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection_v1()?)
            .add_service(reflection_v1alpha()?)
            .add_service(processor);

        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let local_addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.listen,
            source,
        })?;
        let metrics_listener =
            TcpListener::bind(config.metrics_listen)
                .await
                .map_err(|source| StartError::Bind {
                    addr: config.metrics_listen,
                    source,
                })?;
        let metrics_addr = metrics_listener
            .local_addr()
            .map_err(|source| StartError::Bind {
                addr: config.metrics_listen,
                source,
            })?;
        tracing::info!(%local_addr, storage = %config.storage, max_concurrency = config.max_concurrency, "processor ready");
        tracing::info!(%metrics_addr, "metrics at http://{metrics_addr}/metrics");
        Ok(Self {
            listener,
            local_addr,
            metrics_listener,
            metrics_addr,
            registry: Arc::new(registry),
            router,
            health,
            storage,
            ready,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound address of the metrics endpoint.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// Serves until `shutdown` is cancelled, then stops accepting and lets in-flight streams finish.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let Self {
            listener,
            router,
            health,
            storage,
            ready,
            metrics_listener,
            registry,
            ..
        } = self;
        // The background loops, stopped once the last stream has finished (metrics stay readable
        // until then).
        let tasks = Tasks::new();
        tasks.spawn(atelier_telemetry::metrics::serve(
            metrics_listener,
            registry,
            tasks.token().clone(),
        ));
        if !ready {
            tasks.spawn(wait_until_ready(storage, health.clone(), shutdown.clone()));
        }
        let stopping = {
            let health = health.clone();
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                tracing::info!("shutting down: no new calls, finishing the ones in flight");
                health
                    .set_service_status("", ServingStatus::NotServing)
                    .await;
                health
                    .set_service_status(SERVICE_NAME, ServingStatus::NotServing)
                    .await;
            }
        };
        // Each stream message goes out at once: without TCP_NODELAY a small write waits for the
        // caller's delayed acknowledgement of the last one (tens of milliseconds per attempt).
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        let served = router
            .serve_with_incoming_shutdown(incoming, stopping)
            .await;
        // Also when serving failed on its own: the readiness loop follows `shutdown`.
        shutdown.cancel();
        tasks.wait(TASKS_GRACE).await;
        served?;
        tracing::info!("processor stopped");
        Ok(())
    }
}

async fn set_serving(health: &HealthReporter) {
    health.set_service_status("", ServingStatus::Serving).await;
    health
        .set_service_status(SERVICE_NAME, ServingStatus::Serving)
        .await;
}

/// Retries the storage check with a growing pause until it answers, then reports SERVING.
async fn wait_until_ready(storage: Storage, health: HealthReporter, shutdown: CancellationToken) {
    let mut pause = Duration::from_millis(250);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
        match storage.check().await {
            Ok(()) => {
                tracing::info!("storage reachable; SERVING");
                set_serving(&health).await;
                return;
            }
            Err(err) => tracing::warn!(error = %err, "storage still not reachable"),
        }
        pause = (pause * 2).min(Duration::from_secs(10));
    }
}

/// Every gRPC service this server serves, and so all that its reflection lists.
const SERVED: [&str; 4] = [
    SERVICE_NAME,
    tonic_health::pb::health_server::SERVICE_NAME,
    tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
];

/// Reflection over the processor's own descriptors (the API services of the files it imports are
/// left out), listing exactly [`SERVED`].
fn reflection_builder() -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(atelier_proto::PROCESSOR_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
    for name in SERVED {
        builder = builder.with_service_name(name);
    }
    builder
}

fn reflection_v1() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    StartError,
> {
    reflection_builder()
        .build_v1()
        .map_err(|e| StartError::Server(e.to_string()))
}

fn reflection_v1alpha() -> Result<
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
    StartError,
> {
    reflection_builder()
        .build_v1alpha()
        .map_err(|e| StartError::Server(e.to_string()))
}

/// A processor serving on a background task, for tests and embedding; dropping it shuts it down.
pub type RunningProcessor = ServiceHandle<StartError, SocketAddr>;

/// Builds the processor and serves it on a background task.
pub async fn spawn(config: Config) -> Result<RunningProcessor, StartError> {
    let app = Application::build(config).await?;
    let shutdown = CancellationToken::new();
    Ok(ServiceHandle::spawn(
        app.local_addr(),
        app.metrics_addr(),
        shutdown.clone(),
        app.run_until_stopped(shutdown),
    ))
}
