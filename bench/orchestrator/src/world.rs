//! What every measurement needs: fresh databases, a processor, clients and an onboarded account.

use std::time::Duration;

use anyhow::Context as _;
use atelier_proto::v1 as pb;
use atelier_proto::v1::account_service_client::AccountServiceClient;
use sqlx::Connection as _;
use tonic::transport::{Channel, Endpoint};
use tonic::Request;

pub const ADMIN: &str = "bench-admin-token";
pub const SERVICE: &str = "bench-service-token";
/// The account whose jobs are measured.
pub const ACCOUNT: &str = "bench";
/// An account for warm-up jobs, so they stay out of the measured listing.
pub const WARMUP: &str = "warmup";

/// How long until every connection has published its statistics (PostgreSQL 15: idle connections
/// after 10 s).
const STATS_SETTLE: Duration = Duration::from_secs(11);

/// Cumulative counters of one database.
#[derive(Clone, Copy, Debug, Default)]
pub struct Activity {
    pub commits: u64,
    pub rows_written: u64,
    /// Rows written in the database's own tables (pg_stat_user_tables): without the system
    /// catalogs, so without the statistics autovacuum's ANALYZE writes.
    pub table_rows_written: u64,
}

impl Activity {
    /// (commits, rows written, rows written in the database's own tables) per task since `before`.
    pub fn per_task_since(self, before: Activity, tasks: usize) -> (f64, f64, f64) {
        if tasks == 0 {
            return (0.0, 0.0, 0.0);
        }
        let n = tasks as f64;
        (
            self.commits.saturating_sub(before.commits) as f64 / n,
            self.rows_written.saturating_sub(before.rows_written) as f64 / n,
            self.table_rows_written
                .saturating_sub(before.table_rows_written) as f64
                / n,
        )
    }
}

/// Benchmark databases on one PostgreSQL server, dropped at the end.
pub struct Databases {
    server: String,
    created: Vec<String>,
    keep: bool,
}

impl Databases {
    pub fn new(server: &str, keep: bool) -> Self {
        Self {
            server: server.trim_end_matches('/').to_string(),
            created: Vec::new(),
            keep,
        }
    }

    /// Creates an empty database and returns its URL.
    pub async fn fresh(&mut self, label: &str) -> anyhow::Result<String> {
        let name = format!("atelier_bench_{label}_{}", uuid::Uuid::new_v4().simple());
        let mut admin = self.admin().await?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        admin.close().await.ok();
        self.created.push(name.clone());
        Ok(format!("{}/{name}", self.server))
    }

    async fn admin(&self) -> anyhow::Result<sqlx::PgConnection> {
        let url = format!("{}/postgres", self.server);
        sqlx::PgConnection::connect(&url)
            .await
            .with_context(|| format!("connecting to {url} (is PostgreSQL running?)"))
    }

    /// [`Self::activity`] once every connection has published its counts: PostgreSQL 15 publishes a
    /// busy connection's counts at most every second and an idle one's after up to 10 s, so a
    /// reading taken sooner misses writes of the phase before it (and counts them in the next).
    pub async fn settled_activity(&self, url: &str) -> anyhow::Result<Activity> {
        tokio::time::sleep(STATS_SETTLE).await;
        self.activity(url).await
    }

    /// Transactions committed and rows written (inserted, updated, deleted) so far in the database at
    /// `url` (pg_stat_database).
    pub async fn activity(&self, url: &str) -> anyhow::Result<Activity> {
        let name = url.rsplit('/').next().unwrap_or_default().to_string();
        let mut admin = self.admin().await?;
        let (commits, rows): (i64, i64) = sqlx::query_as(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted \
             FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&name)
        .fetch_one(&mut admin)
        .await
        .with_context(|| format!("reading statistics of {name}"))?;
        admin.close().await.ok();
        let mut own = sqlx::PgConnection::connect(url)
            .await
            .with_context(|| format!("connecting to {name}"))?;
        let (table_rows,): (i64,) = sqlx::query_as(
            "SELECT CAST(COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) AS BIGINT) \
             FROM pg_stat_user_tables",
        )
        .fetch_one(&mut own)
        .await
        .with_context(|| format!("reading table statistics of {name}"))?;
        own.close().await.ok();
        Ok(Activity {
            commits: u64::try_from(commits).unwrap_or(0),
            rows_written: u64::try_from(rows).unwrap_or(0),
            table_rows_written: u64::try_from(table_rows).unwrap_or(0),
        })
    }

    /// Drops every database this run created (best effort).
    pub async fn drop_all(&mut self) {
        if self.keep || self.created.is_empty() {
            return;
        }
        let Ok(mut admin) = self.admin().await else {
            return;
        };
        for name in self.created.drain(..) {
            if let Err(e) = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
            {
                eprintln!("bench: could not drop database {name}: {e}");
            }
        }
        admin.close().await.ok();
    }
}

/// Starts a real processor that may fetch sources from 127.0.0.1.
pub async fn start_processor(
    objects: &str,
    max_concurrency: u32,
) -> anyhow::Result<atelier_processor::RunningProcessor> {
    let mut config = atelier_processor::Config::new(SERVICE, objects.to_string());
    config.max_concurrency = max_concurrency;
    config.allow_private_sources = vec!["127.0.0.1/32"
        .parse()
        .map_err(|e| anyhow::anyhow!("allow-list: {e}"))?];
    config.download_timeout = Duration::from_secs(10);
    atelier_processor::spawn(config)
        .await
        .map_err(|e| anyhow::anyhow!("starting the processor: {e}"))
}

/// A new HTTP/2 connection to `url`.
pub async fn connect(url: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(url.to_string())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("connecting to {url}"))
}

fn bearer<T>(message: T, token: &str) -> anyhow::Result<Request<T>> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    Ok(request)
}

/// A call with the admin token.
pub fn admin<T>(message: T) -> anyhow::Result<Request<T>> {
    bearer(message, ADMIN)
}

/// A call of the tenant key acting as `account`.
pub fn as_account<T>(message: T, key: &str, account: &str) -> anyhow::Result<Request<T>> {
    let mut request = bearer(message, key)?;
    request
        .metadata_mut()
        .insert("x-atelier-account", account.parse()?);
    Ok(request)
}

/// Creates a tenant, a tenant-wide key, and these accounts with membership and quota; returns the key.
pub async fn onboard(channel: &Channel, accounts: &[(&str, i64)]) -> anyhow::Result<String> {
    let mut client = AccountServiceClient::new(channel.clone());
    let tenant = client
        .create_tenant(admin(pb::CreateTenantRequest {
            name: "bench".into(),
        })?)
        .await
        .context("CreateTenant")?
        .into_inner();
    let key = client
        .create_api_key(admin(pb::CreateApiKeyRequest {
            tenant_id: tenant.id.clone(),
            account: String::new(),
        })?)
        .await
        .context("CreateApiKey")?
        .into_inner()
        .secret;
    for &(account, balance) in accounts {
        client
            .upsert_account(admin(pb::UpsertAccountRequest {
                tenant_id: tenant.id.clone(),
                external_id: account.into(),
            })?)
            .await
            .context("UpsertAccount")?;
        client
            .set_membership(admin(pb::SetMembershipRequest {
                tenant_id: tenant.id.clone(),
                account: account.into(),
                active: true,
                expires_at: None,
            })?)
            .await
            .context("SetMembership")?;
        client
            .grant_quota(admin(pb::GrantQuotaRequest {
                tenant_id: tenant.id.clone(),
                account: account.into(),
                amount: balance,
                reason: "benchmark".into(),
                idempotency_key: String::new(),
            })?)
            .await
            .context("GrantQuota")?;
    }
    Ok(key)
}

/// A trivial one-task transform job. The recipe differs per `index` (width and quality), so a result
/// cache could not turn the run into cache hits.
pub fn trivial_job(source_url: &str, index: usize) -> pb::SubmitJobRequest {
    let width = 16 + u32::try_from(index % 64).unwrap_or(0);
    let quality = 30 + u32::try_from((index / 64) % 70).unwrap_or(0);
    pb::SubmitJobRequest {
        params: Some(pb::JobParams {
            params: Some(pb::job_params::Params::Transform(pb::TransformParams {
                resize: Some(pb::Resize {
                    width,
                    height: 0,
                    fit: pb::Fit::Inside as i32,
                }),
                format: pb::ImageFormat::Jpeg as i32,
                quality,
                ..Default::default()
            })),
        }),
        sources: vec![pb::Source {
            source: Some(pb::source::Source::Url(source_url.to_string())),
        }],
        ..Default::default()
    }
}
