//! `make bench-orchestrator`: the real job-orchestrator and processor, started in-process on a fresh
//! PostgreSQL database, measured on trivial transform tasks (SPEC §8):
//!
//! - submit latency (p50/p99) and submit throughput from concurrent clients;
//! - end-to-end completion throughput, first submit to last terminal task;
//! - memory of many concurrent `WatchJob` streams on one API-only replica (a child process);
//! - submit latency, the hot statements and the drain rate on an empty database and on one holding a
//!   million finished jobs (`history`).
//!
//! `report` then puts these next to graphile-worker's numbers (bench/orchestrator/graphile.js), writes
//! the result files and prints the throughput ratio as its last line.

mod history;
mod instant;
mod measure;
mod pipeline;
mod report;
mod watchers;
mod world;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "atelier-bench-orchestrator",
    about = "Benchmark of Atelier's job-orchestrator on PostgreSQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Measures Atelier and writes its numbers as JSON.
    Run(RunArgs),
    /// Combines Atelier's and graphile-worker's JSON into the result table.
    Report(report::ReportArgs),
    /// Internal: an API-only orchestrator replica for the WatchJob memory measurement.
    #[command(hide = true)]
    Replica(watchers::ReplicaArgs),
}

/// What `run` measures and with how much load.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Trivial jobs (one task each) submitted for the throughput run.
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Concurrent submitting clients (each on its own connection).
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Concurrent WatchJob streams held open on one replica (0 skips the measurement).
    #[arg(long, default_value_t = 10_000)]
    pub watchers: usize,
    /// Accounts the clients spread over in the extra run that shows the per-account submit lock
    /// (0 skips that run). The headline run submits as one account.
    #[arg(long, default_value_t = 16)]
    pub spread_accounts: usize,
    /// Skip the run that queues every job first and then measures how fast one replica drains them.
    #[arg(long)]
    pub skip_drain: bool,
    /// Finished jobs in the database of the history measurement, which compares submit latency, the
    /// hot statements and the drain rate with an empty database (0 skips the measurement).
    #[arg(long, default_value_t = 1_000_000)]
    pub history_jobs: usize,
    /// Run only the history measurement.
    #[arg(long)]
    pub only_history: bool,
    /// Attempts the orchestrator runs at once.
    #[arg(long, default_value_t = 32)]
    pub dispatch_concurrency: usize,
    /// Attempts the processor accepts at once.
    #[arg(long, default_value_t = 16)]
    pub processor_concurrency: u32,
    /// PostgreSQL server; a fresh database is created per measurement and dropped afterwards.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres: String,
    /// Upper bound of each waiting phase (seconds).
    #[arg(long, default_value_t = 900)]
    pub timeout_seconds: u64,
    /// Keep the benchmark databases instead of dropping them.
    #[arg(long)]
    pub keep_databases: bool,
    /// Also write the JSON here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Run(args) => runtime.block_on(run(args)),
        Command::Report(args) => report::write(&args),
        Command::Replica(args) => runtime.block_on(watchers::replica(args)),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.jobs > 0, "--jobs must be at least 1");
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    anyhow::ensure!(
        !args.only_history || args.history_jobs > 0,
        "--only-history needs --history-jobs above 0"
    );
    let mut databases = world::Databases::new(&args.postgres, args.keep_databases);
    let outcome = measure_all(&args, &mut databases).await;
    databases.drop_all().await;
    let result = outcome?;
    let json = serde_json::to_string_pretty(&result)?;
    if let Some(path) = &args.out {
        std::fs::write(path, &json)?;
    }
    println!("{json}");
    Ok(())
}

async fn measure_all(
    args: &RunArgs,
    databases: &mut world::Databases,
) -> anyhow::Result<serde_json::Value> {
    let root = tempfile::tempdir()?;
    let objects = root.path().join("objects").display().to_string();
    let sources = atelier_testkit::SourceServer::start().await;
    let source_url = sources.url("/image.jpg");
    let processor = world::start_processor(&objects, args.processor_concurrency).await?;
    // The headline runs compare equal work: tasks that return at once, as graphile-worker's empty
    // task function does. The real transform runs after them.
    let instant = instant::InstantProcessor::start(args.processor_concurrency).await?;

    eprintln!(
        "bench: {} jobs from {} clients, dispatch concurrency {}, processor concurrency {}",
        args.jobs, args.clients, args.dispatch_concurrency, args.processor_concurrency
    );
    if args.only_history {
        let history =
            history::measure(args, databases, &objects, &instant.url(), &source_url).await?;
        processor.stop().await.ok();
        return Ok(serde_json::json!({
            "system": "atelier",
            "config": {
                "jobs": args.jobs,
                "clients": args.clients,
                "dispatch_concurrency": args.dispatch_concurrency,
                "processor_concurrency": args.processor_concurrency,
            },
            "history": history,
        }));
    }
    let pipeline =
        pipeline::concurrent(args, databases, &objects, &instant.url(), &source_url, 1).await?;
    eprintln!(
        "bench: {:.1} tasks/s end to end (instant tasks), submit p50 {:.2} ms p99 {:.2} ms, {:.2} transactions and {:.2} rows per task",
        pipeline.completion.tasks_per_second,
        pipeline.submit.p50_ms,
        pipeline.submit.p99_ms,
        pipeline.completion.db_commits_per_task,
        pipeline.completion.db_rows_written_per_task
    );
    let real =
        pipeline::concurrent(args, databases, &objects, &processor.url(), &source_url, 1).await?;
    eprintln!(
        "bench: {:.1} tasks/s end to end (real transforms), {:.2} transactions and {:.2} rows per task",
        real.completion.tasks_per_second,
        real.completion.db_commits_per_task,
        real.completion.db_rows_written_per_task
    );

    let spread = if args.spread_accounts > 1 {
        let run = pipeline::concurrent(
            args,
            databases,
            &objects,
            &instant.url(),
            &source_url,
            args.spread_accounts,
        )
        .await?;
        eprintln!(
            "bench: over {} accounts: {:.1} tasks/s end to end, submit p50 {:.2} ms p99 {:.2} ms",
            args.spread_accounts,
            run.completion.tasks_per_second,
            run.submit.p50_ms,
            run.submit.p99_ms
        );
        Some(serde_json::json!({
            "accounts": args.spread_accounts,
            "submit": run.submit,
            "completion": run.completion,
        }))
    } else {
        None
    };

    let drain = if args.skip_drain {
        None
    } else {
        let d = pipeline::drain(args, databases, &objects, &instant.url(), &source_url).await?;
        eprintln!(
            "bench: draining {} queued tasks: {:.1} tasks/s",
            d.tasks, d.tasks_per_second
        );
        Some(d)
    };

    let watch = if args.watchers > 0 {
        eprintln!("bench: {} WatchJob streams on one replica", args.watchers);
        let w = watchers::measure(args, databases, &objects, &processor.url(), &source_url).await?;
        eprintln!(
            "bench: {} streams open, +{:.1} MiB, {:.1} KiB per stream",
            w.open, w.rss_delta_mib, w.kib_per_stream
        );
        Some(w)
    } else {
        None
    };
    let history = if args.history_jobs > 0 {
        eprintln!(
            "bench: empty database against {} finished jobs",
            args.history_jobs
        );
        Some(history::measure(args, databases, &objects, &instant.url(), &source_url).await?)
    } else {
        None
    };
    processor.stop().await.ok();
    Ok(serde_json::json!({
        "system": "atelier",
        "config": {
            "jobs": args.jobs,
            "clients": args.clients,
            "watchers": args.watchers,
            "dispatch_concurrency": args.dispatch_concurrency,
            "processor_concurrency": args.processor_concurrency,
            "task": "headline: a bench-only processor answering each task at once over gRPC; real: transform of the testkit 640x480 JPEG from 127.0.0.1 to a <=79 px wide JPEG, a distinct recipe per job",
        },
        "submit": pipeline.submit,
        "completion": pipeline.completion,
        "real": {
            "submit": real.submit,
            "completion": real.completion,
        },
        "spread": spread,
        "drain": drain,
        "watch": watch,
        "history": history,
    }))
}
