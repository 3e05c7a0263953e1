//! Start-up: configuration checked into settings, database and migrations, storage, the gRPC server
//! (API, health, reflection) and the background tasks (dispatcher, webhooks, observer, retention,
//! listener, metrics, watch streams), all owned by one [`Tasks`] and stopped together by its token.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use atelier_proto::v1::account_service_server::{self, AccountServiceServer};
use atelier_proto::v1::job_service_server::{self, JobServiceServer};
use atelier_proto::v1::studio_service_server::{self, StudioServiceServer};
use atelier_storage::{Links, Storage, StorageError};
use atelier_telemetry::service::{ServiceHandle, Tasks};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

use crate::api::{accounts::Accounts, jobs::Jobs, studio::Studio};
use crate::auth::Auth;
use crate::config::Config;
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

/// Why a replica could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration cannot work.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The database could not be reached.
    #[error("cannot connect to the database: {0}")]
    Database(#[source] sea_orm::DbErr),
    /// The schema could not be brought up to date.
    #[error("cannot migrate the database: {0}")]
    Migrate(#[source] sea_orm::DbErr),
    /// The object storage could not be opened.
    #[error("cannot open storage: {0}")]
    Storage(#[from] StorageError),
    /// An address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A gRPC component could not be built.
    #[error("cannot build the gRPC server: {0}")]
    Server(String),
    /// The server failed while running.
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    /// The task serving the replica panicked or was aborted.
    #[error("the replica's task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// What shutdown allows, beyond the grace period, for handing back the attempts that did not finish
/// in it.
const HAND_BACK: Duration = Duration::from_secs(5);

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
    queue_event_every: Duration,
    database_check_every: Duration,
    shutdown_grace: Duration,
}

impl Application {
    /// Checks the configuration, connects and migrates the database, opens storage and binds the
    /// listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let settings = config.settings().map_err(StartError::Config)?;
        if config.max_concurrent_requests == 0 {
            return Err(StartError::Config(
                "--max-concurrent-requests (ATELIER_MAX_CONCURRENT_REQUESTS) must be at least 1"
                    .into(),
            ));
        }
        let timeout = Duration::try_from_secs_f64(config.request_timeout_seconds)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or_else(|| {
                StartError::Config(
                    "--request-timeout-seconds (ATELIER_REQUEST_TIMEOUT_SECONDS) must be a \
                     positive number of seconds"
                        .into(),
                )
            })?;
        let limits = Limits {
            concurrent: config.max_concurrent_requests,
            timeout,
        };
        let db = db::connect_with(&config.database_url, settings.database_acquire_timeout)
            .await
            .map_err(StartError::Database)?;
        db::migrate(&db).await.map_err(StartError::Migrate)?;
        let storage = Storage::open(&config.storage, &config.s3_options()).await?;
        let links = Links::new(
            storage.clone(),
            config.link_secret.as_deref(),
            config.files_base_url.as_deref(),
            Duration::from_secs(config.link_ttl_seconds),
        )
        .map_err(|e| StartError::Config(format!("result links: {e}")))?;
        if matches!(storage, Storage::LocalFs(_))
            && (config.link_secret.is_none() || config.files_base_url.is_none())
        {
            tracing::warn!(
                "local storage without ATELIER_LINK_SECRET and ATELIER_FILES_BASE_URL: outputs keep \
                 file:// URLs that only this machine can open"
            );
        }
        let processors = Processors::new(&config.processors, &config.service_token)
            .map_err(|e| StartError::Config(format!("{e:#}")))?;
        let bind_error = |addr| move |source| StartError::Bind { addr, source };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(bind_error(config.listen))?;
        let local_addr = listener.local_addr().map_err(bind_error(config.listen))?;
        let owner = config
            .instance_id
            .clone()
            .unwrap_or_else(|| format!("orchestrator-{}", uuid::Uuid::new_v4()));
        let metrics_listener = match config.metrics_listen {
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(bind_error(addr))?),
            None => None,
        };
        let bus = EventBus::new();
        let handle = DispatchHandle::default();
        let metrics = Metrics::new();
        let keys = crate::auth::KeyCache::default();
        let auth = Auth::new(
            db.clone(),
            config.admin_token.clone(),
            config.service_token.clone(),
            keys.clone(),
        );
        let ctx = Context {
            db: db.clone(),
            bus: bus.clone(),
            storage,
            links: links.clone(),
            policy: Arc::new(Policy {
                prices: settings.prices,
                family_prices: settings.family_prices,
                max_active_jobs: config.max_active_jobs,
                max_upload_bytes: config.max_upload_bytes,
                attempt_timeout: settings.tasks.attempt_timeout,
                model_attempt_timeout: settings.tasks.model_attempt_timeout,
            }),
            dispatch: handle.clone(),
            processors: processors.clone(),
            metrics: metrics.clone(),
            retention: settings.retention,
            tasks: Tasks::new(),
            keys,
            run_times: crate::context::RunTimes::new(db.clone()),
        };
        let dispatch = DispatchSettings {
            owner,
            concurrency: config.dispatch_concurrency,
            timing: settings.tasks.clone(),
        };
        let webhooks = Webhooks::new(
            db.clone(),
            bus.clone(),
            webhooks::Settings {
                owner: dispatch.owner.clone(),
                retry_base: settings.webhook_retry_base,
                retry_window: settings.webhook_retry_window,
                timeout: settings.webhook_timeout,
                allow_private: config.webhook_allow_private.clone(),
                poll: settings.tasks.poll,
            },
            metrics.clone(),
            links,
        )
        .map_err(|e| StartError::Config(format!("webhooks: {e:#}")))?;
        let database = DatabaseState::default();
        let dispatcher = Dispatcher::new(db, bus, handle, processors, dispatch, metrics)
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
            queue_event_every: settings.queue_event_every,
            database_check_every: settings.database_check_every,
            shutdown_grace: settings.tasks.shutdown_grace,
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

    /// Serves and dispatches until `shutdown`. Then it stops accepting calls, ends the open watch
    /// streams (UNAVAILABLE), lets running attempts finish within the grace period or hands them
    /// back, waits for every background task (at most the grace period and a little for handing
    /// back) and returns.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), StartError> {
        let tasks = self.ctx.tasks.clone();
        let (health, health_service) = tonic_health::server::health_reporter();
        let reflection_v1 = reflection()
            .build_v1()
            .map_err(|e| StartError::Server(e.to_string()))?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| StartError::Server(e.to_string()))?;
        let jobs = JobServiceServer::new(Jobs::new(self.ctx.clone()))
            .max_decoding_message_size(MAX_MESSAGE);
        let accounts = AccountServiceServer::new(Accounts::new(self.ctx.clone()));
        let studio = StudioServiceServer::new(Studio::new(self.ctx.clone()));
        // Migrations ran and storage opened in build(): the replica is ready, for as long as its
        // database answers.
        let health = tasks.spawn(crate::health::watch_database(
            self.ctx.db.clone(),
            self.database.clone(),
            health,
            self.database_check_every,
            tasks.token().clone(),
        ));
        if sea_orm::ConnectionTrait::get_database_backend(&self.ctx.db)
            == sea_orm::DatabaseBackend::Postgres
        {
            let pool = self.ctx.db.get_postgres_connection_pool().clone();
            tasks.spawn(crate::listener::listen_postgres(
                pool,
                self.ctx.bus.clone(),
                self.ctx.dispatch.clone(),
                self.ctx.keys.clone(),
                tasks.token().clone(),
            ));
        }
        if let Some(listener) = self.metrics_listener {
            if let Ok(addr) = listener.local_addr() {
                tracing::info!(%addr, "metrics listening");
            }
            tasks.spawn(atelier_telemetry::metrics::serve(
                listener,
                self.ctx.metrics.registry(),
                tasks.token().clone(),
            ));
        }
        tasks.spawn(crate::observer::run(
            self.ctx.db.clone(),
            self.ctx.bus.clone(),
            self.ctx.metrics.clone(),
            self.queue_event_every,
            tasks.token().clone(),
        ));
        tasks.spawn(crate::retention::run(
            self.ctx.db.clone(),
            self.ctx.storage.clone(),
            self.ctx.metrics.clone(),
            self.ctx.retention,
            tasks.token().clone(),
        ));
        tasks.spawn(self.webhooks.run(tasks.token().clone()));
        tasks.spawn(self.dispatcher.run(tasks.token().clone()));
        let stopping = tasks.clone();
        // Each reply and stream message goes out at once: without TCP_NODELAY a small write waits
        // for the peer's delayed acknowledgement of the last one (tens of milliseconds).
        let incoming = TcpIncoming::from(self.listener).with_nodelay(Some(true));
        let serve = crate::layers::server(self.auth, self.limits)
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(jobs)
            .add_service(accounts)
            .add_service(studio)
            .serve_with_incoming_shutdown(incoming, async move {
                stopping.stopping().await;
                // The watcher reports NOT_SERVING as it stops.
                if let Err(e) = health.await {
                    tracing::error!(error = %e, "health watcher ended abnormally");
                }
            });
        let mut server = tasks.spawn(serve);
        let ended_early = tokio::select! {
            () = shutdown.cancelled() => None,
            () = tasks.stopping() => None,
            ended = &mut server => Some(ended),
        };
        tracing::info!(
            grace_seconds = self.shutdown_grace.as_secs_f64(),
            "shutting down: no new calls; ending watch streams and background tasks"
        );
        let in_time = tasks.wait(self.shutdown_grace + HAND_BACK).await;
        let served = match ended_early {
            Some(ended) => ended,
            None if in_time || server.is_finished() => server.await,
            None => {
                server.abort();
                Ok(Ok(()))
            }
        };
        self.ctx.db.clone().close().await.ok();
        served??;
        tracing::info!("orchestrator stopped");
        Ok(())
    }
}

/// Runs the migrations only (`atelier-orchestrator migrate`).
pub async fn migrate(config: &Config) -> Result<(), StartError> {
    let db = db::connect(&config.database_url)
        .await
        .map_err(StartError::Database)?;
    db::migrate(&db).await.map_err(StartError::Migrate)?;
    Ok(())
}

/// A replica running on a background task, for tests and tools; dropping it stops the replica.
pub type RunningOrchestrator = ServiceHandle<StartError, Option<SocketAddr>>;

/// Builds and starts a replica on a background task.
pub async fn spawn(config: Config) -> Result<RunningOrchestrator, StartError> {
    let app = Application::build(config).await?;
    let shutdown = CancellationToken::new();
    Ok(ServiceHandle::spawn(
        app.local_addr(),
        app.metrics_addr(),
        shutdown.clone(),
        app.run_until_stopped(shutdown),
    ))
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
