//! Configuration: every flag also reads an `ATELIER_*` environment variable.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use atelier_storage::S3Options;
use atelier_telemetry::LogFormat;

use atelier_codes::family::Family;

use crate::domain::Kind;

/// The job-orchestrator's command line.
#[derive(Clone, Debug, clap::Parser)]
#[command(
    name = "atelier-orchestrator",
    version,
    about = "Atelier job-orchestrator: accounts, quota, jobs, dispatch, events"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

/// What to do; serving is the default.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the gRPC API and dispatch tasks.
    Serve,
    /// Bring the database schema up to date and exit.
    Migrate,
}

/// Settings of one orchestrator replica.
#[derive(Clone, Debug, clap::Args)]
pub struct Config {
    /// Address of the gRPC API.
    #[arg(long, env = "ATELIER_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// `sqlite://path` (default, embedded) or `postgres://user@host/db`.
    #[arg(
        long,
        env = "ATELIER_DATABASE_URL",
        default_value = "sqlite://var/atelier.db"
    )]
    pub database_url: String,
    /// Token for administration calls (tenants, keys, quota, membership).
    #[arg(long, env = "ATELIER_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,
    /// Token the processors accept in `x-api-key`.
    #[arg(long, env = "ATELIER_SERVICE_TOKEN", hide_env_values = true)]
    pub service_token: String,
    /// Processor addresses, comma separated.
    #[arg(
        long = "processor",
        env = "ATELIER_PROCESSORS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:50052"
    )]
    pub processors: Vec<String>,
    /// Object storage for uploads, shared with the processors: a folder, or `s3://bucket[/prefix]`.
    #[arg(long, env = "ATELIER_STORAGE", default_value = "var/objects")]
    pub storage: String,
    /// How to reach an S3-compatible store (`--s3-*`), when storage is `s3://…`.
    #[command(flatten)]
    pub s3: S3Options,
    /// Secret (at least 16 bytes) signing the gateway's `/v1/files/{token}` links to objects of a
    /// local storage folder; the gateway must be given the same one.
    #[arg(long, env = "ATELIER_LINK_SECRET", hide_env_values = true)]
    pub link_secret: Option<String>,
    /// Public URL of the gateway (`https://api.example.com`), base of local-storage result links.
    #[arg(long, env = "ATELIER_FILES_BASE_URL")]
    pub files_base_url: Option<String>,
    /// How long a result link (presigned S3 GET or gateway file link) stays valid (seconds, at most
    /// seven days).
    #[arg(long, env = "ATELIER_LINK_TTL_SECONDS", default_value_t = 3600)]
    pub link_ttl_seconds: u64,
    /// Days a terminal job (outputs, thumbnails, events) is kept after it finished, for tenants that
    /// set no retention of their own.
    #[arg(long, env = "ATELIER_RETENTION_OUTPUT_DAYS", default_value_t = 30)]
    pub retention_output_days: u32,
    /// Days an upload is kept, for tenants that set no retention of their own.
    #[arg(long, env = "ATELIER_RETENTION_UPLOAD_DAYS", default_value_t = 7)]
    pub retention_upload_days: u32,
    /// Days the events (log) of a terminal job are kept, for tenants that set no retention of their
    /// own; the job and its outputs stay until the output retention.
    #[arg(long, env = "ATELIER_RETENTION_EVENT_DAYS", default_value_t = 30)]
    pub retention_event_days: u32,
    /// Pause between retention sweeps (seconds); 0 turns the sweeper off on this replica.
    #[arg(
        long,
        env = "ATELIER_RETENTION_SWEEP_SECONDS",
        default_value_t = 3600.0
    )]
    pub retention_sweep_seconds: f64,
    /// Rows the sweeper handles per batch.
    #[arg(long, env = "ATELIER_RETENTION_BATCH", default_value_t = 100)]
    pub retention_batch: u64,
    /// Task attempts this replica runs at once; 0 makes an API-only replica that runs none.
    #[arg(long, env = "ATELIER_DISPATCH_CONCURRENCY", default_value_t = 8)]
    pub dispatch_concurrency: usize,
    /// Lease of a running task, renewed every third of it (seconds).
    #[arg(long, env = "ATELIER_LEASE_SECONDS", default_value_t = 30.0)]
    pub lease_seconds: f64,
    /// How often the queue is read without a wake-up (seconds).
    #[arg(long, env = "ATELIER_POLL_SECONDS", default_value_t = 0.5)]
    pub poll_seconds: f64,
    /// First retry delay, doubled per attempt (seconds).
    #[arg(long, env = "ATELIER_RETRY_BASE_SECONDS", default_value_t = 2.0)]
    pub retry_base_seconds: f64,
    /// Attempts per task in all.
    #[arg(long, env = "ATELIER_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: u32,
    /// A task still queued after this fails with 1007 (seconds).
    #[arg(long, env = "ATELIER_QUEUE_TIMEOUT_SECONDS", default_value_t = 600.0)]
    pub queue_timeout_seconds: f64,
    /// Deadline of one attempt of a local task (seconds).
    #[arg(long, env = "ATELIER_ATTEMPT_TIMEOUT_SECONDS", default_value_t = 120.0)]
    pub attempt_timeout_seconds: f64,
    /// Deadline of one attempt of a model kind: edit, generate, pose_set (seconds).
    #[arg(
        long,
        env = "ATELIER_MODEL_ATTEMPT_TIMEOUT_SECONDS",
        default_value_t = 600.0
    )]
    pub model_attempt_timeout_seconds: f64,
    /// Address of the Prometheus metrics endpoint (`GET /metrics`); empty turns it off.
    #[arg(long, env = "ATELIER_METRICS_LISTEN", default_value = "127.0.0.1:9100")]
    pub metrics_listen: Option<SocketAddr>,
    /// First webhook retry delay, doubled per attempt up to an hour (seconds).
    #[arg(
        long,
        env = "ATELIER_WEBHOOK_RETRY_BASE_SECONDS",
        default_value_t = 10.0
    )]
    pub webhook_retry_base_seconds: f64,
    /// How long a webhook delivery is retried before it is given up (seconds; at least 8 attempts).
    #[arg(
        long,
        env = "ATELIER_WEBHOOK_RETRY_WINDOW_SECONDS",
        default_value_t = 86_400.0
    )]
    pub webhook_retry_window_seconds: f64,
    /// Timeout of one webhook call (seconds).
    #[arg(long, env = "ATELIER_WEBHOOK_TIMEOUT_SECONDS", default_value_t = 10.0)]
    pub webhook_timeout_seconds: f64,
    /// Private networks webhooks may reach (CIDR, comma separated); public addresses always can.
    #[arg(long, env = "ATELIER_WEBHOOK_ALLOW_PRIVATE", value_delimiter = ',')]
    pub webhook_allow_private: Vec<atelier_netguard::IpNet>,
    /// How long a call waits for a database connection while the database is down or busy, before
    /// it fails with 1009 UNAVAILABLE (seconds).
    #[arg(
        long,
        env = "ATELIER_DATABASE_ACQUIRE_TIMEOUT_SECONDS",
        default_value_t = 30.0
    )]
    pub database_acquire_timeout_seconds: f64,
    /// How often the database is pinged for the health service; a ping unanswered this long makes
    /// the replica NOT_SERVING until one is answered again (seconds).
    #[arg(long, env = "ATELIER_DATABASE_CHECK_SECONDS", default_value_t = 2.0)]
    pub database_check_seconds: f64,
    /// How often queued jobs get a fresh queue position event (seconds).
    #[arg(long, env = "ATELIER_QUEUE_EVENT_SECONDS", default_value_t = 5.0)]
    pub queue_event_seconds: f64,
    /// Shutdown waits this long for running attempts, then hands them back; every background task
    /// gets the same bound, plus 5 s for handing back (seconds).
    #[arg(long, env = "ATELIER_SHUTDOWN_GRACE_SECONDS", default_value_t = 20.0)]
    pub shutdown_grace_seconds: f64,
    /// Calls served at once; further calls wait for one to finish.
    #[arg(long, env = "ATELIER_MAX_CONCURRENT_REQUESTS", default_value_t = 1024)]
    pub max_concurrent_requests: usize,
    /// How long a unary call may take before it is cut with 1007 (seconds); streams (WatchJob,
    /// WatchEvents, UploadSource) are not cut.
    #[arg(long, env = "ATELIER_REQUEST_TIMEOUT_SECONDS", default_value_t = 60.0)]
    pub request_timeout_seconds: f64,
    /// Most active (queued or running) jobs per account.
    #[arg(long, env = "ATELIER_MAX_ACTIVE_JOBS", default_value_t = 10)]
    pub max_active_jobs: u32,
    /// Largest upload (bytes).
    #[arg(long, env = "ATELIER_MAX_UPLOAD_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// Prices per task as `kind=units`, comma separated (defaults: every kind 1, pose_set 12).
    #[arg(long, env = "ATELIER_PRICES", value_delimiter = ',')]
    pub prices: Vec<String>,
    /// Prices per task for the jobs of one client family as `family:kind=units` (repeatable, or
    /// comma separated), overriding the kind's price for that family. Families: `image_editor`,
    /// `task_api`, `generator`, `image_edit`. Default: `task_api:pose_set=1` (seed 001 charged one
    /// unit per model_pose12 task); give `task_api:pose_set=12` to charge it as any pose set.
    #[arg(
        long = "family-price",
        env = "ATELIER_FAMILY_PRICES",
        value_delimiter = ','
    )]
    pub family_prices: Vec<String>,
    /// This replica's name in task leases (default: a random id).
    #[arg(long, env = "ATELIER_INSTANCE_ID")]
    pub instance_id: Option<String>,
    #[arg(long, env = "ATELIER_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Config {
    /// Defaults for embedding (tests, tools): loopback on a free port, the given database and storage.
    pub fn new(
        database_url: impl Into<String>,
        storage: impl Into<String>,
        processors: Vec<String>,
    ) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.into(),
            admin_token: "admin-token".into(),
            service_token: "service-token".into(),
            processors,
            storage: storage.into(),
            s3: S3Options::default(),
            link_secret: None,
            files_base_url: None,
            link_ttl_seconds: 3600,
            retention_output_days: 30,
            retention_upload_days: 7,
            retention_event_days: 30,
            retention_sweep_seconds: 3600.0,
            retention_batch: 100,
            dispatch_concurrency: 8,
            lease_seconds: 30.0,
            poll_seconds: 0.5,
            retry_base_seconds: 2.0,
            max_attempts: 3,
            queue_timeout_seconds: 600.0,
            attempt_timeout_seconds: 120.0,
            model_attempt_timeout_seconds: 600.0,
            metrics_listen: None,
            webhook_retry_base_seconds: 10.0,
            webhook_retry_window_seconds: 86_400.0,
            webhook_timeout_seconds: 10.0,
            webhook_allow_private: Vec::new(),
            database_acquire_timeout_seconds: 30.0,
            database_check_seconds: 2.0,
            queue_event_seconds: 5.0,
            shutdown_grace_seconds: 20.0,
            max_concurrent_requests: 1024,
            request_timeout_seconds: 60.0,
            max_active_jobs: 10,
            max_upload_bytes: 10 * 1024 * 1024,
            prices: Vec::new(),
            family_prices: Vec::new(),
            instance_id: None,
            log_format: LogFormat::Text,
        }
    }

    /// The S3 settings, when storage is `s3://…`.
    pub fn s3_options(&self) -> S3Options {
        self.s3.clone()
    }

    /// The configuration checked once into the settings the replica runs with; a value out of range is
    /// an error naming its flag, never quietly raised or lowered.
    pub fn settings(&self) -> Result<Settings, String> {
        if self.admin_token.is_empty() {
            return Err(
                "the admin token (--admin-token, ATELIER_ADMIN_TOKEN) must not be empty".into(),
            );
        }
        if self.service_token.is_empty() {
            return Err(
                "the service token (--service-token, ATELIER_SERVICE_TOKEN) must not be empty"
                    .into(),
            );
        }
        let ms = Duration::from_millis;
        let poll = duration("poll-seconds", self.poll_seconds, ms(50))?;
        Ok(Settings {
            prices: self.price_table().map_err(|e| format!("{e:#}"))?,
            family_prices: self.family_price_table().map_err(|e| format!("{e:#}"))?,
            database_acquire_timeout: duration(
                "database-acquire-timeout-seconds",
                self.database_acquire_timeout_seconds,
                ms(100),
            )?,
            tasks: TaskTiming {
                lease: duration("lease-seconds", self.lease_seconds, ms(300))?,
                poll,
                max_attempts: match i32::try_from(self.max_attempts) {
                    Ok(n) if n >= 1 => n,
                    _ => {
                        return Err(format!(
                        "--max-attempts (ATELIER_MAX_ATTEMPTS) must be between 1 and {}, not {}",
                        i32::MAX,
                        self.max_attempts
                    ))
                    }
                },
                retry_base: duration(
                    "retry-base-seconds",
                    self.retry_base_seconds,
                    Duration::ZERO,
                )?,
                queue_timeout: duration(
                    "queue-timeout-seconds",
                    self.queue_timeout_seconds,
                    Duration::ZERO,
                )?,
                attempt_timeout: duration(
                    "attempt-timeout-seconds",
                    self.attempt_timeout_seconds,
                    Duration::ZERO,
                )?,
                model_attempt_timeout: duration(
                    "model-attempt-timeout-seconds",
                    self.model_attempt_timeout_seconds,
                    Duration::ZERO,
                )?,
                shutdown_grace: duration(
                    "shutdown-grace-seconds",
                    self.shutdown_grace_seconds,
                    Duration::ZERO,
                )?,
            },
            webhook_retry_base: duration(
                "webhook-retry-base-seconds",
                self.webhook_retry_base_seconds,
                Duration::ZERO,
            )?,
            webhook_retry_window: duration(
                "webhook-retry-window-seconds",
                self.webhook_retry_window_seconds,
                Duration::ZERO,
            )?,
            webhook_timeout: duration(
                "webhook-timeout-seconds",
                self.webhook_timeout_seconds,
                ms(100),
            )?,
            queue_event_every: duration("queue-event-seconds", self.queue_event_seconds, ms(50))?,
            database_check_every: duration(
                "database-check-seconds",
                self.database_check_seconds,
                ms(50),
            )?,
            retention: crate::retention::Settings {
                defaults: crate::db::retention::Defaults {
                    output_days: at_least_one("retention-output-days", self.retention_output_days)?,
                    upload_days: at_least_one("retention-upload-days", self.retention_upload_days)?,
                    event_days: at_least_one("retention-event-days", self.retention_event_days)?,
                },
                every: duration(
                    "retention-sweep-seconds",
                    self.retention_sweep_seconds,
                    Duration::ZERO,
                )?,
                batch: at_least_one("retention-batch", self.retention_batch)?,
            },
        })
    }

    /// Prices by kind, defaults overridden by `--prices`.
    pub fn price_table(&self) -> anyhow::Result<HashMap<Kind, i64>> {
        let mut prices = HashMap::from([
            (Kind::Transform, 1),
            (Kind::BasicClean, 1),
            (Kind::Edit, 1),
            (Kind::Generate, 1),
            (Kind::PoseSet, 12),
        ]);
        for entry in &self.prices {
            let (kind, units) = entry
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("price {entry:?}: expected kind=units"))?;
            let kind = Kind::parse(kind.trim())
                .ok_or_else(|| anyhow::anyhow!("price {entry:?}: unknown kind"))?;
            let units: i64 = units
                .trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("price {entry:?}: units must be a whole number"))?;
            anyhow::ensure!(units >= 0, "price {entry:?}: units must not be negative");
            prices.insert(kind, units);
        }
        Ok(prices)
    }
}

impl Config {
    /// Per-family prices, defaults overridden by `--family-price`.
    pub fn family_price_table(&self) -> anyhow::Result<HashMap<(Family, Kind), i64>> {
        let mut prices = HashMap::from([((Family::TaskApi, Kind::PoseSet), 1)]);
        for entry in &self.family_prices {
            let bad = |why: &str| anyhow::anyhow!("family price {entry:?}: {why}");
            let (family, rest) = entry
                .split_once(':')
                .ok_or_else(|| bad("expected family:kind=units"))?;
            let (kind, units) = rest
                .split_once('=')
                .ok_or_else(|| bad("expected family:kind=units"))?;
            let family = Family::parse(family.trim()).ok_or_else(|| {
                let names: Vec<&str> = Family::ALL.iter().map(|f| f.as_str()).collect();
                bad(&format!("unknown family; one of {}", names.join(", ")))
            })?;
            let kind = Kind::parse(kind.trim()).ok_or_else(|| bad("unknown kind"))?;
            let units: i64 = units
                .trim()
                .parse()
                .map_err(|_| bad("units must be a whole number"))?;
            anyhow::ensure!(
                units >= 0,
                "family price {entry:?}: units must not be negative"
            );
            prices.insert((family, kind), units);
        }
        Ok(prices)
    }
}

/// What a replica runs with: [`Config`] checked once by [`Config::settings`].
#[derive(Clone, Debug)]
pub struct Settings {
    /// Quota units per task by kind.
    pub prices: HashMap<Kind, i64>,
    /// Prices of one family's jobs, overriding `prices` for that kind.
    pub family_prices: HashMap<(Family, Kind), i64>,
    /// How long a call waits for a database connection (at least 100 ms).
    pub database_acquire_timeout: Duration,
    /// How tasks are leased, retried and timed out.
    pub tasks: TaskTiming,
    /// First webhook retry delay.
    pub webhook_retry_base: Duration,
    /// How long a webhook delivery is retried.
    pub webhook_retry_window: Duration,
    /// Timeout of one webhook call (at least 100 ms).
    pub webhook_timeout: Duration,
    /// How often queued jobs get a fresh queue position event (at least 50 ms).
    pub queue_event_every: Duration,
    /// How often the database is pinged for the health service (at least 50 ms).
    pub database_check_every: Duration,
    /// Retention defaults (each at least a day) and the sweeper's pace.
    pub retention: crate::retention::Settings,
}

/// How tasks are run, validated once: what dispatch, the sweeper and the API's deadlines read.
#[derive(Clone, Debug)]
pub struct TaskTiming {
    /// Lease of a running task (at least 300 ms).
    pub lease: Duration,
    /// How often the queue (and the webhook outbox) is read without a wake-up (at least 50 ms).
    pub poll: Duration,
    /// Attempts per task in all (at least 1).
    pub max_attempts: i32,
    /// First retry delay.
    pub retry_base: Duration,
    /// A task still queued after this fails.
    pub queue_timeout: Duration,
    /// Deadline of one attempt of a local kind.
    pub attempt_timeout: Duration,
    /// Deadline of one attempt of a model kind.
    pub model_attempt_timeout: Duration,
    /// How long shutdown waits for running attempts and background tasks.
    pub shutdown_grace: Duration,
}

/// `--{flag}` in seconds as a duration of at least `min`.
fn duration(flag: &str, value: f64, min: Duration) -> Result<Duration, String> {
    let env = format!("ATELIER_{}", flag.replace('-', "_").to_uppercase());
    match Duration::try_from_secs_f64(value) {
        Ok(d) if d >= min => Ok(d),
        _ if min.is_zero() => Err(format!(
            "--{flag} ({env}) must be a number of seconds, zero or more, not {value}"
        )),
        _ => Err(format!(
            "--{flag} ({env}) must be at least {} seconds, not {value}",
            min.as_secs_f64()
        )),
    }
}

/// `--{flag}`, which must be at least 1.
fn at_least_one<N: PartialOrd + From<u8> + std::fmt::Display>(
    flag: &str,
    value: N,
) -> Result<N, String> {
    if value >= N::from(1) {
        Ok(value)
    } else {
        let env = format!("ATELIER_{}", flag.replace('-', "_").to_uppercase());
        Err(format!("--{flag} ({env}) must be at least 1, not {value}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_out_of_range_values_are_refused() {
        let config = Config::new("sqlite::memory:", "var/objects", Vec::new());
        let settings = config.settings().expect("the defaults are valid");
        assert_eq!(settings.tasks.lease, Duration::from_secs(30));
        assert_eq!(settings.tasks.max_attempts, 3);
        assert_eq!(settings.tasks.shutdown_grace, Duration::from_secs(20));
        type Spoil = fn(&mut Config);
        let refused: [(&str, Spoil); 9] = [
            (
                "--lease-seconds (ATELIER_LEASE_SECONDS) must be at least 0.3",
                |c| c.lease_seconds = 0.1,
            ),
            ("--poll-seconds", |c| c.poll_seconds = 0.0),
            ("--max-attempts", |c| c.max_attempts = 0),
            ("--shutdown-grace-seconds", |c| {
                c.shutdown_grace_seconds = -1.0
            }),
            ("--queue-timeout-seconds", |c| {
                c.queue_timeout_seconds = f64::NAN
            }),
            ("--retention-output-days", |c| c.retention_output_days = 0),
            ("--retention-batch", |c| c.retention_batch = 0),
            ("--webhook-timeout-seconds", |c| {
                c.webhook_timeout_seconds = 0.01
            }),
            ("admin token", |c| c.admin_token.clear()),
        ];
        for (message, spoil) in refused {
            let mut config = Config::new("sqlite::memory:", "var/objects", Vec::new());
            spoil(&mut config);
            let error = config.settings().expect_err(message);
            assert!(
                error.contains(message),
                "{error:?} should mention {message:?}"
            );
        }
    }

    #[test]
    fn family_prices_default_and_override() {
        let mut config = Config::new("sqlite::memory:", "var/objects", Vec::new());
        let table = config.family_price_table().expect("defaults");
        assert_eq!(table.get(&(Family::TaskApi, Kind::PoseSet)), Some(&1));
        assert_eq!(table.len(), 1);
        config.family_prices = vec!["task_api:pose_set=12".into(), "generator:generate=2".into()];
        let table = config.family_price_table().expect("overrides");
        assert_eq!(table.get(&(Family::TaskApi, Kind::PoseSet)), Some(&12));
        assert_eq!(table.get(&(Family::Generator, Kind::Generate)), Some(&2));
        for bad in [
            "task_api=1",
            "nope:pose_set=1",
            "task_api:nope=1",
            "task_api:edit=-1",
        ] {
            config.family_prices = vec![bad.into()];
            assert!(config.family_price_table().is_err(), "{bad}");
        }
    }
}
