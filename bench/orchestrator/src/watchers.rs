//! (c) Memory of many concurrent WatchJob streams on one replica.
//!
//! The replica is this binary's hidden `replica` command: a real orchestrator in its own process with
//! `dispatch_concurrency = 0` on a fresh database, so the watched jobs stay queued and the streams stay
//! open, and its resident memory is read from /proc/<pid>/status without the clients' memory in it.

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use atelier_proto::v1 as pb;
use atelier_proto::v1::job_service_client::JobServiceClient;
use clap::Args;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::measure::{machine_cpu_seconds, process_cpu_seconds, status_kib};
use crate::pipeline::{self, SubmitStats};
use crate::world::{self, as_account, Databases, ACCOUNT, ADMIN, SERVICE};
use crate::RunArgs;

/// Streams per client connection (the server allows 200 concurrent streams per HTTP/2 connection).
const STREAMS_PER_CONNECTION: usize = 100;
/// WatchJob calls being opened at once.
const OPENING_AT_ONCE: usize = 64;
/// Quiet time before memory is read, so start-up work has settled.
const SETTLE: Duration = Duration::from_secs(5);
/// Window over which the CPU use of idle streams is measured.
const CPU_WINDOW: Duration = Duration::from_secs(10);

/// The hidden replica command.
#[derive(Args, Clone, Debug)]
pub struct ReplicaArgs {
    #[arg(long)]
    pub database_url: String,
    #[arg(long)]
    pub storage: String,
    #[arg(long)]
    pub processor: String,
    #[arg(long)]
    pub max_active_jobs: u32,
}

/// Runs an API-only replica until standard input closes; prints `READY <url>` once it serves.
pub async fn replica(args: ReplicaArgs) -> anyhow::Result<()> {
    let mut config =
        atelier_orchestrator::Config::new(args.database_url, args.storage, vec![args.processor]);
    config.admin_token = ADMIN.into();
    config.service_token = SERVICE.into();
    config.dispatch_concurrency = 0;
    config.max_active_jobs = args.max_active_jobs;
    // The watched jobs must stay queued for the whole measurement.
    config.queue_timeout_seconds = 86_400.0;
    let orchestrator = atelier_orchestrator::spawn(config).await?;
    println!("READY {}", orchestrator.url());
    let mut rest = Vec::new();
    tokio::io::stdin().read_to_end(&mut rest).await.ok();
    tokio::time::timeout(Duration::from_secs(30), orchestrator.stop())
        .await
        .map_err(|_| anyhow::anyhow!("the replica did not stop within 30 s"))??;
    Ok(())
}

/// What the WatchJob measurement found.
#[derive(Debug, Serialize)]
pub struct WatchStats {
    pub requested: usize,
    /// WatchJob calls answered with a stream.
    pub open: usize,
    /// Streams that had delivered their stored events (replay) by the time memory was read.
    pub replayed: usize,
    /// Streams that failed to open or ended with an error.
    pub errors: usize,
    pub first_error: Option<String>,
    /// Streams still open at the end of the measurement.
    pub still_open: usize,
    pub connections: usize,
    pub open_seconds: f64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub rss_delta_mib: f64,
    pub kib_per_stream: f64,
    pub rss_peak_mib: f64,
    /// CPU of the replica while the streams sit idle, in % of one core.
    pub idle_replica_cpu_percent: f64,
    /// CPU of the whole machine (replica, PostgreSQL, this client) while the streams sit idle, in %
    /// of all cores.
    pub idle_machine_cpu_percent: f64,
    /// Submitting the watched jobs to the API-only replica (nothing dispatched meanwhile), one
    /// account per client.
    pub submit_without_dispatch: SubmitStats,
}

struct Counters {
    open: AtomicUsize,
    replayed: AtomicUsize,
    /// Open streams that ended (normally or with an error).
    ended: AtomicUsize,
    errors: AtomicUsize,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(message);
        }
    }
}

/// Starts the replica, queues one job per stream, opens the streams and reads the replica's memory.
pub async fn measure(
    args: &RunArgs,
    databases: &mut Databases,
    objects: &str,
    processor_url: &str,
    source_url: &str,
) -> anyhow::Result<WatchStats> {
    let streams = args.watchers;
    let database_url = databases.fresh("watch").await?;
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args([
            "replica",
            "--database-url",
            &database_url,
            "--storage",
            objects,
        ])
        .args(["--processor", processor_url, "--max-active-jobs"])
        .arg((streams + 10).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting the replica")?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow::anyhow!("the replica has no pid"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no replica stdout"))?;
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(120),
        BufReader::new(stdout).read_line(&mut line),
    )
    .await
    .context("the replica did not start within 120 s")??;
    let url = line
        .trim()
        .strip_prefix("READY ")
        .ok_or_else(|| anyhow::anyhow!("unexpected replica output {line:?}"))?
        .to_string();

    let channel = world::connect(&url).await?;
    let balance = i64::try_from(streams).unwrap_or(i64::MAX / 2) + 10;
    // One account per client: a single account's submits serialise on its row lock.
    let names = pipeline::accounts(ACCOUNT, args.clients);
    let grants: Vec<(&str, i64)> = names.iter().map(|a| (a.as_str(), balance)).collect();
    let key = world::onboard(&channel, &grants).await?;
    let submitted =
        pipeline::submit_all(&url, &key, &names, streams, args.clients, source_url).await?;
    let submit_without_dispatch = submitted.stats(streams);
    let jobs = pipeline::collect(&channel, &key, &names).await?;
    eprintln!(
        "bench: {} jobs queued on the API-only replica in {:.1} s; opening streams",
        jobs.len(),
        submitted.wall.as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_before = status_kib(pid, "VmRSS:")?;

    let connections = jobs.len().div_ceil(STREAMS_PER_CONNECTION).max(1);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(world::connect(&url).await?);
    }
    let counters = Arc::new(Counters {
        open: AtomicUsize::new(0),
        replayed: AtomicUsize::new(0),
        ended: AtomicUsize::new(0),
        errors: AtomicUsize::new(0),
        first_error: std::sync::Mutex::new(None),
    });
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let mut holders = JoinSet::new();
    let t0 = Instant::now();
    for (i, job) in jobs.iter().enumerate() {
        let client = JobServiceClient::new(channels[i % connections].clone());
        let request = as_account(
            pb::WatchJobRequest {
                job_id: job.id.clone(),
                after_sequence: 0,
            },
            &key,
            &job.account,
        )?;
        let counters = counters.clone();
        let opening = opening.clone();
        holders.spawn(hold(client, request, counters, opening));
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    loop {
        let settled =
            counters.open.load(Ordering::Relaxed) + counters.errors.load(Ordering::Relaxed);
        if settled >= jobs.len() {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {settled} of {} WatchJob calls answered in time",
            jobs.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let open_seconds = t0.elapsed().as_secs_f64();
    eprintln!(
        "bench: {} streams open after {open_seconds:.1} s; letting them settle",
        counters.open.load(Ordering::Relaxed)
    );
    tokio::time::sleep(SETTLE).await;
    let rss_after = status_kib(pid, "VmRSS:")?;
    let rss_peak = status_kib(pid, "VmHWM:")?;

    let cpu_before = process_cpu_seconds(pid)?;
    let (busy_before, total_before) = machine_cpu_seconds()?;
    tokio::time::sleep(CPU_WINDOW).await;
    let cpu_after = process_cpu_seconds(pid)?;
    let (busy_after, total_after) = machine_cpu_seconds()?;

    let open = counters.open.load(Ordering::Relaxed);
    let ended = counters.ended.load(Ordering::Relaxed);
    let errors = counters.errors.load(Ordering::Relaxed);
    let replayed = counters.replayed.load(Ordering::Relaxed);
    let first_error = counters.first_error.lock().ok().and_then(|f| f.clone());

    holders.abort_all();
    while holders.join_next().await.is_some() {}
    drop(channels);
    drop(channel);
    drop(child.stdin.take());
    if tokio::time::timeout(Duration::from_secs(40), child.wait())
        .await
        .is_err()
    {
        child.kill().await.ok();
    }

    let mib = |kib: u64| kib as f64 / 1024.0;
    let delta_kib = rss_after.saturating_sub(rss_before);
    let total_delta = total_after - total_before;
    Ok(WatchStats {
        requested: streams,
        open,
        replayed,
        errors,
        first_error,
        still_open: open.saturating_sub(ended),
        connections,
        open_seconds,
        rss_before_mib: mib(rss_before),
        rss_after_mib: mib(rss_after),
        rss_delta_mib: mib(delta_kib),
        kib_per_stream: if open == 0 {
            0.0
        } else {
            delta_kib as f64 / open as f64
        },
        rss_peak_mib: mib(rss_peak),
        idle_replica_cpu_percent: (cpu_after - cpu_before) / CPU_WINDOW.as_secs_f64() * 100.0,
        idle_machine_cpu_percent: if total_delta > 0.0 {
            (busy_after - busy_before) / total_delta * 100.0
        } else {
            0.0
        },
        submit_without_dispatch,
    })
}

/// Opens one stream and keeps reading it until aborted.
async fn hold(
    mut client: JobServiceClient<tonic::transport::Channel>,
    request: tonic::Request<pb::WatchJobRequest>,
    counters: Arc<Counters>,
    opening: Arc<Semaphore>,
) {
    let permit = opening.acquire_owned().await;
    let mut stream = match client.watch_job(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            counters.error(format!("{:?}: {}", status.code(), status.message()));
            return;
        }
    };
    counters.open.fetch_add(1, Ordering::Relaxed);
    drop(permit);
    let mut first = true;
    loop {
        match stream.message().await {
            Ok(Some(_)) => {
                if first {
                    counters.replayed.fetch_add(1, Ordering::Relaxed);
                    first = false;
                }
            }
            Ok(None) => {
                counters.ended.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(status) => {
                counters.ended.fetch_add(1, Ordering::Relaxed);
                counters.error(format!("{:?}: {}", status.code(), status.message()));
                return;
            }
        }
    }
}
