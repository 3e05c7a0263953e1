//! (a) submit latency and throughput from concurrent clients, and (b) end-to-end completion
//! throughput: first submit to last terminal task, read back from the jobs' own timestamps.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use atelier_proto::v1 as pb;
use atelier_proto::v1::job_service_client::JobServiceClient;
use serde::Serialize;
use tokio::task::JoinSet;
use tonic::transport::Channel;

use crate::measure::{mean, ms, percentile, unix_seconds};
use crate::world::{self, as_account, Databases, ACCOUNT, ADMIN, SERVICE, WARMUP};
use crate::RunArgs;

/// Warm-up jobs run before measuring (connections, prepared statements, caches).
const WARMUP_JOBS: usize = 32;
/// How often the run looks whether work is left.
const POLL: Duration = Duration::from_millis(250);

/// Submit side of a run.
#[derive(Debug, Serialize)]
pub struct SubmitStats {
    pub jobs: usize,
    pub clients: usize,
    pub accepted: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub wall_seconds: f64,
    /// Accepted submits per second over the submitting phase.
    pub per_second: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Completion side of a run, from the stored timestamps of every task.
#[derive(Debug, Default, Serialize)]
pub struct CompletionStats {
    pub tasks: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub other: usize,
    pub first_failure: Option<String>,
    /// First submit to the last task's finish.
    pub span_seconds: f64,
    /// Succeeded tasks per second over `span_seconds`.
    pub tasks_per_second: f64,
    /// First submit to the last task's first start.
    pub dispatch_span_seconds: f64,
    /// Tasks started per second over `dispatch_span_seconds`.
    pub dispatched_per_second: f64,
    pub attempts: u64,
    pub queue_wait_p50_ms: f64,
    pub queue_wait_p99_ms: f64,
    /// Start of the (first) attempt to the finish: processor work plus recording.
    pub run_mean_ms: f64,
    pub run_p50_ms: f64,
    pub run_p99_ms: f64,
    /// Submit to finish.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    /// Stored events per job.
    pub events_per_job: f64,
    /// PostgreSQL transactions committed in the benchmark database per task while the run lasted
    /// (API calls, dispatch, events; includes the run's own light polling).
    pub db_commits_per_task: f64,
    /// Rows inserted, updated or deleted in the benchmark database per task, same window.
    pub db_rows_written_per_task: f64,
    /// The same in the database's own tables only (no system catalogs: no statistics written by
    /// autovacuum's ANALYZE).
    pub db_table_rows_written_per_task: f64,
}

/// Both sides.
pub struct Pipeline {
    pub submit: SubmitStats,
    pub completion: CompletionStats,
}

/// What `submit_all` saw.
pub struct Submitted {
    pub started: SystemTime,
    pub wall: Duration,
    pub latencies_ms: Vec<f64>,
    pub errors: usize,
    pub first_error: Option<String>,
    pub clients: usize,
}

impl Submitted {
    pub fn stats(&self, jobs: usize) -> SubmitStats {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_by(f64::total_cmp);
        let wall = self.wall.as_secs_f64();
        SubmitStats {
            jobs,
            clients: self.clients,
            accepted: sorted.len(),
            errors: self.errors,
            first_error: self.first_error.clone(),
            wall_seconds: wall,
            per_second: if wall > 0.0 {
                sorted.len() as f64 / wall
            } else {
                0.0
            },
            mean_ms: mean(&sorted),
            p50_ms: percentile(&sorted, 0.50),
            p90_ms: percentile(&sorted, 0.90),
            p99_ms: percentile(&sorted, 0.99),
            max_ms: sorted.last().copied().unwrap_or(0.0),
        }
    }
}

#[derive(Default)]
struct ClientPart {
    latencies_ms: Vec<f64>,
    errors: usize,
    first_error: Option<String>,
}

/// Submits `jobs` trivial jobs from `clients` concurrent clients, each on its own connection and
/// submitting as `accounts[client % accounts.len()]`, and times every call.
pub async fn submit_all(
    url: &str,
    key: &str,
    accounts: &[String],
    jobs: usize,
    clients: usize,
    source_url: &str,
) -> anyhow::Result<Submitted> {
    let mut channels = Vec::with_capacity(clients);
    for _ in 0..clients {
        channels.push(world::connect(url).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = SystemTime::now();
    let t0 = Instant::now();
    let mut set = JoinSet::new();
    anyhow::ensure!(!accounts.is_empty(), "no account to submit as");
    for (c, channel) in channels.into_iter().enumerate() {
        let next = next.clone();
        let key = key.to_string();
        let account = accounts[c % accounts.len()].clone();
        let source_url = source_url.to_string();
        set.spawn(async move {
            let mut client = JobServiceClient::new(channel);
            let mut part = ClientPart::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    break;
                }
                let request = as_account(world::trivial_job(&source_url, i), &key, &account)?;
                let t = Instant::now();
                match client.submit_job(request).await {
                    Ok(_) => part.latencies_ms.push(ms(t.elapsed())),
                    Err(status) => {
                        part.errors += 1;
                        part.first_error.get_or_insert_with(|| {
                            format!("{:?}: {}", status.code(), status.message())
                        });
                    }
                }
            }
            anyhow::Ok(part)
        });
    }
    let mut all = Submitted {
        started,
        wall: Duration::ZERO,
        latencies_ms: Vec::with_capacity(jobs),
        errors: 0,
        first_error: None,
        clients,
    };
    while let Some(part) = set.join_next().await {
        let part = part??;
        all.latencies_ms.extend(part.latencies_ms);
        all.errors += part.errors;
        if all.first_error.is_none() {
            all.first_error = part.first_error;
        }
    }
    all.wall = t0.elapsed();
    Ok(all)
}

async fn count_in_state(
    client: &mut JobServiceClient<Channel>,
    key: &str,
    account: &str,
    state: pb::JobState,
) -> anyhow::Result<usize> {
    let page = client
        .list_jobs(as_account(
            pb::ListJobsRequest {
                page_size: 1,
                state: state as i32,
                ..Default::default()
            },
            key,
            account,
        )?)
        .await
        .context("ListJobs")?
        .into_inner();
    Ok(page.jobs.len())
}

/// Waits until none of the accounts has a queued or running job left.
pub async fn wait_idle(
    channel: &Channel,
    key: &str,
    accounts: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut client = JobServiceClient::new(channel.clone());
    let deadline = Instant::now() + timeout;
    for account in accounts {
        loop {
            let busy = count_in_state(&mut client, key, account, pb::JobState::Queued).await?
                + count_in_state(&mut client, key, account, pb::JobState::Running).await?;
            if busy == 0 {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "jobs of {account} still not terminal after {} s",
                timeout.as_secs()
            );
            tokio::time::sleep(POLL).await;
        }
    }
    Ok(())
}

/// Every job of the accounts, through ListJobs pages.
pub async fn collect(
    channel: &Channel,
    key: &str,
    accounts: &[String],
) -> anyhow::Result<Vec<pb::Job>> {
    let mut jobs = Vec::new();
    for account in accounts {
        jobs.extend(collect_one(channel, key, account).await?);
    }
    Ok(jobs)
}

async fn collect_one(channel: &Channel, key: &str, account: &str) -> anyhow::Result<Vec<pb::Job>> {
    let mut client = JobServiceClient::new(channel.clone());
    let mut jobs = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_jobs(as_account(
                pb::ListJobsRequest {
                    page_size: 100,
                    page_token: token,
                    ..Default::default()
                },
                key,
                account,
            )?)
            .await
            .context("ListJobs")?
            .into_inner();
        jobs.extend(page.jobs);
        if page.next_page_token.is_empty() {
            return Ok(jobs);
        }
        token = page.next_page_token;
    }
}

/// A protobuf timestamp's parts as seconds since the Unix epoch.
fn secs(seconds: i64, nanos: i32) -> f64 {
    seconds as f64 + f64::from(nanos) / 1e9
}

/// Per-task numbers of the run, from stored timestamps.
pub fn completion(jobs: &[pb::Job], started: SystemTime) -> CompletionStats {
    let t0 = unix_seconds(started);
    let mut stats = CompletionStats::default();
    let (mut waits, mut runs, mut latencies) = (Vec::new(), Vec::new(), Vec::new());
    let (mut last_start, mut last_finish) = (t0, t0);
    let mut events = 0u64;
    for job in jobs {
        events += job.last_sequence;
        let created = job.created_at.as_ref().map(|t| secs(t.seconds, t.nanos));
        for task in &job.tasks {
            stats.tasks += 1;
            stats.attempts += u64::from(task.attempts);
            match pb::TaskState::try_from(task.state) {
                Ok(pb::TaskState::Succeeded) => stats.succeeded += 1,
                Ok(pb::TaskState::Failed) => {
                    stats.failed += 1;
                    if stats.first_failure.is_none() {
                        stats.first_failure = task
                            .failure
                            .as_ref()
                            .map(|f| format!("{f:?}"))
                            .or(Some("failed without details".into()));
                    }
                }
                _ => stats.other += 1,
            }
            let start = task.started_at.as_ref().map(|t| secs(t.seconds, t.nanos));
            let finish = task.finished_at.as_ref().map(|t| secs(t.seconds, t.nanos));
            if let Some(s) = start {
                last_start = last_start.max(s);
                if let Some(c) = created {
                    waits.push((s - c) * 1000.0);
                }
            }
            if let Some(f) = finish {
                last_finish = last_finish.max(f);
                if let Some(s) = start {
                    runs.push((f - s) * 1000.0);
                }
                if let Some(c) = created {
                    latencies.push((f - c) * 1000.0);
                }
            }
        }
    }
    for v in [&mut waits, &mut runs, &mut latencies] {
        v.sort_by(f64::total_cmp);
    }
    stats.span_seconds = last_finish - t0;
    stats.tasks_per_second = per_second(stats.succeeded, stats.span_seconds);
    stats.dispatch_span_seconds = last_start - t0;
    stats.dispatched_per_second = per_second(stats.tasks, stats.dispatch_span_seconds);
    stats.queue_wait_p50_ms = percentile(&waits, 0.50);
    stats.queue_wait_p99_ms = percentile(&waits, 0.99);
    stats.run_mean_ms = mean(&runs);
    stats.run_p50_ms = percentile(&runs, 0.50);
    stats.run_p99_ms = percentile(&runs, 0.99);
    stats.latency_p50_ms = percentile(&latencies, 0.50);
    stats.latency_p99_ms = percentile(&latencies, 0.99);
    stats.events_per_job = if jobs.is_empty() {
        0.0
    } else {
        events as f64 / jobs.len() as f64
    };
    stats
}

fn per_second(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// `n` account names: `prefix-0`, `prefix-1`, … (just `prefix` for one).
pub fn accounts(prefix: &str, n: usize) -> Vec<String> {
    if n <= 1 {
        vec![prefix.to_string()]
    } else {
        (0..n).map(|i| format!("{prefix}-{i}")).collect()
    }
}

/// A replica of the benchmark on `database_url` running `dispatch` attempts at once.
pub async fn start_replica(
    args: &RunArgs,
    database_url: &str,
    objects: &str,
    processor_url: &str,
    dispatch: usize,
) -> anyhow::Result<atelier_orchestrator::RunningOrchestrator> {
    let mut config = atelier_orchestrator::Config::new(
        database_url.to_string(),
        objects.to_string(),
        vec![processor_url.to_string()],
    );
    config.admin_token = ADMIN.into();
    config.service_token = SERVICE.into();
    config.dispatch_concurrency = dispatch;
    config.max_active_jobs = u32::try_from(args.jobs + WARMUP_JOBS + 10).unwrap_or(u32::MAX);
    atelier_orchestrator::spawn(config)
        .await
        .context("starting an orchestrator")
}

/// (a) and (b): clients submit while one replica dispatches, on a fresh database.
pub async fn concurrent(
    args: &RunArgs,
    databases: &mut Databases,
    objects: &str,
    processor_url: &str,
    source_url: &str,
    account_count: usize,
) -> anyhow::Result<Pipeline> {
    let database_url = databases.fresh("pipeline").await?;
    let orchestrator = start_replica(
        args,
        &database_url,
        objects,
        processor_url,
        args.dispatch_concurrency,
    )
    .await?;
    let url = orchestrator.url();
    let channel = world::connect(&url).await?;
    let names = accounts(ACCOUNT, account_count);
    let warmup = vec![WARMUP.to_string()];
    let balance = i64::try_from(args.jobs).unwrap_or(i64::MAX / 2) + 10;
    let mut grants: Vec<(&str, i64)> = names.iter().map(|a| (a.as_str(), balance)).collect();
    grants.push((WARMUP, 100));
    let key = world::onboard(&channel, &grants).await?;
    let timeout = Duration::from_secs(args.timeout_seconds);

    let warm = submit_all(&url, &key, &warmup, WARMUP_JOBS, args.clients, source_url).await?;
    anyhow::ensure!(
        warm.errors == 0,
        "warm-up submits failed: {:?}",
        warm.first_error
    );
    wait_idle(&channel, &key, &warmup, timeout).await?;

    let activity_before = databases.settled_activity(&database_url).await?;
    let submitted = submit_all(&url, &key, &names, args.jobs, args.clients, source_url).await?;
    eprintln!(
        "bench: {} submits over {} account(s) in {:.2} s ({} errors); waiting for the tasks",
        submitted.latencies_ms.len(),
        names.len(),
        submitted.wall.as_secs_f64(),
        submitted.errors
    );
    wait_idle(&channel, &key, &names, timeout).await?;
    let jobs = collect(&channel, &key, &names).await?;
    let activity_after = databases.settled_activity(&database_url).await?;
    orchestrator.stop().await.ok();

    let mut completion = completion(&jobs, submitted.started);
    (
        completion.db_commits_per_task,
        completion.db_rows_written_per_task,
        completion.db_table_rows_written_per_task,
    ) = activity_after.per_task_since(activity_before, completion.tasks);
    Ok(Pipeline {
        submit: submitted.stats(args.jobs),
        completion,
    })
}

/// Dispatch capacity alone: the jobs are queued first through an API-only replica, then a
/// dispatching replica starts on the same database and drains them.
pub async fn drain(
    args: &RunArgs,
    databases: &mut Databases,
    objects: &str,
    processor_url: &str,
    source_url: &str,
) -> anyhow::Result<CompletionStats> {
    let database_url = databases.fresh("drain").await?;
    let api = start_replica(args, &database_url, objects, processor_url, 0).await?;
    let url = api.url();
    let channel = world::connect(&url).await?;
    let names = accounts(ACCOUNT, 1);
    let balance = i64::try_from(args.jobs).unwrap_or(i64::MAX / 2) + 10;
    let key = world::onboard(&channel, &[(ACCOUNT, balance)]).await?;
    let submitted = submit_all(&url, &key, &names, args.jobs, args.clients, source_url).await?;
    anyhow::ensure!(
        submitted.errors == 0,
        "queueing the drain jobs failed: {:?}",
        submitted.first_error
    );
    let activity_before = databases.settled_activity(&database_url).await?;
    let started = SystemTime::now();
    let worker = start_replica(
        args,
        &database_url,
        objects,
        processor_url,
        args.dispatch_concurrency,
    )
    .await?;
    wait_idle(
        &channel,
        &key,
        &names,
        Duration::from_secs(args.timeout_seconds),
    )
    .await?;
    let jobs = collect(&channel, &key, &names).await?;
    let activity_after = databases.settled_activity(&database_url).await?;
    worker.stop().await.ok();
    api.stop().await.ok();
    let mut completion = completion(&jobs, started);
    (
        completion.db_commits_per_task,
        completion.db_rows_written_per_task,
        completion.db_table_rows_written_per_task,
    ) = activity_after.per_task_since(activity_before, completion.tasks);
    Ok(completion)
}
