//! Start-up: database and migrations, storage, the gRPC server (API, health, reflection) and the
//! dispatcher, all stopped together by one cancellation token.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use atelier_proto::v1::account_service_server::{self, AccountServiceServer};
use atelier_proto::v1::job_service_server::{self, JobServiceServer};
use atelier_proto::v1::studio_service_server::{self, StudioServiceServer};
use atelier_storage::{Links, Storage};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use crate::api::{accounts::Accounts, jobs::Jobs, studio::Studio};
use crate::auth::Auth;
use crate::config::{seconds, Config};
use crate::context::{Context, Policy};
use crate::db;
use crate::dispatch::{DispatchHandle, DispatchSettings, Dispatcher, Processors};
use crate::events::EventBus;
use crate::health::DatabaseState;
use crate::layers::Limits;
use crate::metrics::Metrics;
use crate::webhooks::{self, Webhooks};

/// Largest gRPC message accepted (upload chunks are far smaller).
const MAX_MESSAGE: usize = 16 << 20;

/// Every gRPC service this server serves, and so all that its reflection lists.
const SERVED: [&str; 6] = [
    job_service_server::SERVICE_NAME,
    account_service_server::SERVICE_NAME,
    studio_service_server::SERVICE_NAME,
    tonic_health::pb::health_server::SERVICE_NAME,
    tonic_reflection::pb::v1::server_reflection_server::SERVICE_NAME,
    tonic_reflection::pb::v1alpha::server_reflection_server::SERVICE_NAME,
];

/// A replica that is bound, migrated and ready to serve.
pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    metrics_listener: Option<TcpListener>,
    ctx: Context,
    auth: Auth,
    limits: Limits,
    dispatcher: Dispatcher,
    database: DatabaseState,
    webhooks: Webhooks,
    queue_event_every: std::time::Duration,
    database_check_every: std::time::Duration,
}

impl Application {
    /// Connects and migrates the database, opens storage and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        anyhow::ensure!(
            !config.admin_token.is_empty(),
            "the admin token must not be empty"
        );
        anyhow::ensure!(
            !config.service_token.is_empty(),
            "the service token must not be empty"
        );
        anyhow::ensure!(
            config.max_concurrent_requests > 0,
            "--max-concurrent-requests must be at least 1"
        );
        let limits = Limits {
            concurrent: config.max_concurrent_requests,
            timeout: seconds(config.request_timeout_seconds),
        };
        anyhow::ensure!(
            !limits.timeout.is_zero(),
            "--request-timeout-seconds must be a positive number of seconds"
        );
        let prices = config.price_table()?;
        let family_prices = config.family_price_table()?;
        let acquire_timeout = seconds(config.database_acquire_timeout_seconds)
            .max(std::time::Duration::from_millis(100));
        let db = db::connect_with(&config.database_url, acquire_timeout)
            .await
            .context("connecting to the database")?;
        db::migrate(&db).await.context("migrating the database")?;
        let storage = Storage::open(&config.storage, &config.s3_options())
            .await
            .context("opening storage")?;
        let links = Links::new(
            storage.clone(),
            config.link_secret.as_deref(),
            config.files_base_url.as_deref(),
            std::time::Duration::from_secs(config.link_ttl_seconds),
        )
        .context("result links")?;
        if matches!(storage, Storage::LocalFs(_))
            && (config.link_secret.is_none() || config.files_base_url.is_none())
        {
            tracing::warn!(
                "local storage without ATELIER_LINK_SECRET and ATELIER_FILES_BASE_URL: outputs keep \
                 file:// URLs that only this machine can open"
            );
        }
        let processors = Processors::new(&config.processors, &config.service_token)?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let local_addr = listener.local_addr()?;
        let owner = config
            .instance_id
            .clone()
            .unwrap_or_else(|| format!("orchestrator-{}", uuid::Uuid::new_v4()));
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("metrics listening on {addr}"))?,
            ),
            None => None,
        };
        let bus = EventBus::new();
        let handle = DispatchHandle::default();
        let metrics = Metrics::new();
        let auth = Auth::new(
            db.clone(),
            config.admin_token.clone(),
            config.service_token.clone(),
        );
        let ctx = Context {
            db: db.clone(),
            bus: bus.clone(),
            storage,
            links: links.clone(),
            policy: Arc::new(Policy {
                prices,
                family_prices,
                max_active_jobs: config.max_active_jobs,
                max_upload_bytes: config.max_upload_bytes,
                attempt_timeout: seconds(config.attempt_timeout_seconds),
                model_attempt_timeout: seconds(config.model_attempt_timeout_seconds),
            }),
            dispatch: handle.clone(),
            processors: processors.clone(),
            metrics: metrics.clone(),
            retention: config.retention(),
        };
        let settings = DispatchSettings {
            owner,
            concurrency: config.dispatch_concurrency,
            lease: seconds(config.lease_seconds).max(std::time::Duration::from_millis(300)),
            poll: seconds(config.poll_seconds).max(std::time::Duration::from_millis(10)),
            max_attempts: i32::try_from(config.max_attempts.max(1)).unwrap_or(3),
            retry_base: seconds(config.retry_base_seconds),
            queue_timeout: seconds(config.queue_timeout_seconds),
            attempt_timeout: seconds(config.attempt_timeout_seconds),
            model_attempt_timeout: seconds(config.model_attempt_timeout_seconds),
            shutdown_grace: seconds(config.shutdown_grace_seconds),
        };
        let webhooks = Webhooks::new(
            db.clone(),
            bus.clone(),
            webhooks::Settings {
                owner: settings.owner.clone(),
                retry_base: seconds(config.webhook_retry_base_seconds),
                retry_window: seconds(config.webhook_retry_window_seconds),
                timeout: seconds(config.webhook_timeout_seconds)
                    .max(std::time::Duration::from_millis(100)),
                allow_private: config.webhook_allow_private.clone(),
                poll: settings.poll.max(std::time::Duration::from_millis(50)),
            },
            metrics.clone(),
            links,
        )?;
        let database = DatabaseState::default();
        let dispatcher = Dispatcher::new(db, bus, handle, processors, settings, metrics)
            .with_database_state(database.clone());
        Ok(Self {
            listener,
            local_addr,
            metrics_listener,
            ctx,
            auth,
            limits,
            dispatcher,
            database,
            webhooks,
            queue_event_every: seconds(config.queue_event_seconds)
                .max(std::time::Duration::from_millis(50)),
            database_check_every: seconds(config.database_check_seconds)
                .max(std::time::Duration::from_millis(50)),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Serves and dispatches until `shutdown`; then stops accepting calls, lets running attempts finish
    /// or hands them back, and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let jobs = JobServiceServer::new(Jobs::new(self.ctx.clone()))
            .max_decoding_message_size(MAX_MESSAGE);
        let accounts = AccountServiceServer::new(Accounts::new(self.ctx.clone()));
        let studio = StudioServiceServer::new(Studio::new(self.ctx.clone()));
        // Migrations ran and storage opened in build(): the replica is ready, for as long as its
        // database answers.
        let health = tokio::spawn(crate::health::watch_database(
            self.ctx.db.clone(),
            self.database.clone(),
            health,
            self.database_check_every,
            shutdown.clone(),
        ));
        if sea_orm::ConnectionTrait::get_database_backend(&self.ctx.db)
            == sea_orm::DatabaseBackend::Postgres
        {
            let pool = self.ctx.db.get_postgres_connection_pool().clone();
            crate::events::listen_postgres(
                pool,
                self.ctx.bus.clone(),
                self.ctx.dispatch.clone(),
                shutdown.clone(),
            );
        }
        if let Some(listener) = self.metrics_listener {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "metrics listening");
            }
            tokio::spawn(atelier_telemetry::metrics::serve(
                listener,
                self.ctx.metrics.registry(),
                shutdown.clone(),
            ));
        }
        tokio::spawn(crate::observer::run(
            self.ctx.db.clone(),
            self.ctx.bus.clone(),
            self.ctx.metrics.clone(),
            self.queue_event_every,
            shutdown.clone(),
        ));
        tokio::spawn(crate::retention::run(
            self.ctx.db.clone(),
            self.ctx.storage.clone(),
            self.ctx.metrics.clone(),
            self.ctx.retention,
            shutdown.clone(),
        ));
        let webhooks = tokio::spawn(self.webhooks.run(shutdown.clone()));
        let dispatch = tokio::spawn(self.dispatcher.run(shutdown.clone()));
        let serve_shutdown = shutdown.clone();
        let served = crate::layers::server(self.auth, self.limits)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(jobs)
            .add_service(accounts)
            .add_service(studio)
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.listener), async move {
                serve_shutdown.cancelled().await;
                // The watcher reports NOT_SERVING as it stops.
                if let Err(e) = health.await {
                    tracing::error!(error = %e, "health watcher ended abnormally");
                }
            })
            .await;
        shutdown.cancel();
        if let Err(e) = dispatch.await {
            tracing::error!(error = %e, "dispatcher ended abnormally");
        }
        if let Err(e) = webhooks.await {
            tracing::error!(error = %e, "webhook sender ended abnormally");
        }
        self.ctx.db.clone().close().await.ok();
        served.context("serving gRPC")
    }
}

/// Runs the migrations only (`atelier-orchestrator migrate`).
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let db = db::connect(&config.database_url)
        .await
        .context("connecting to the database")?;
    db::migrate(&db).await.context("migrating the database")?;
    Ok(())
}

/// A replica running on a background task, for tests and tools.
pub struct RunningOrchestrator {
    addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl RunningOrchestrator {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served, when it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// `http://ip:port`, for gRPC clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it gracefully and waits until it has stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.context("orchestrator task")?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningOrchestrator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Builds and starts a replica on a background task.
pub async fn spawn(config: Config) -> anyhow::Result<RunningOrchestrator> {
    let app = Application::build(config).await?;
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    Ok(RunningOrchestrator {
        addr,
        metrics_addr,
        shutdown,
        task: Some(task),
    })
}

/// Reflection over the API's own descriptors, listing exactly [`SERVED`] (the processor's
/// `ProcessorService` is neither served nor described here).
fn reflection() -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(atelier_proto::API_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
    for name in SERVED {
        builder = builder.with_service_name(name);
    }
    builder
}
