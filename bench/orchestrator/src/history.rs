//! History does not slow the present (issue 16): the same measurements on an empty database and on
//! one holding `--history-jobs` finished jobs.
//!
//! Each side gets a fresh database, migrated by an orchestrator replica that onboards the benchmark
//! account and stops. The history side is then filled with set-based SQL: finished jobs (succeeded,
//! failed, cancelled) spread over the benchmark account and 2,000 accounts of 50 other tenants, each
//! with its task, three events and its ledger charge, followed by `VACUUM ANALYZE`. Its rows are named
//! as the orchestrator names them (UUIDv7 ids in creation order, charges keyed `charge:<job>`), so new
//! rows land in the indexes where they would land after a month of real use. Then, on both sides
//! alike, after a `CHECKPOINT`:
//!
//! - submit latency: clients submit `--jobs` jobs as the benchmark account through an API-only
//!   replica (dispatch concurrency 0), so the jobs stay queued;
//! - hot statements: the claim and the other queries of the dispatch loop, the sweeper, the submit
//!   path and the observer, timed one after the other through sqlx against that queue (the claim in
//!   a transaction rolled back, so the queue stays as it is);
//! - drain: a dispatching replica starts and runs the queued tasks; tasks per second from its start
//!   to the last task's finish.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use serde::Serialize;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Row as _};

use crate::measure::{mean, ms, percentile};
use crate::pipeline::{self, SubmitStats};
use crate::world::{self, Databases, ACCOUNT, WARMUP};
use crate::RunArgs;

/// Finished jobs inserted per statement.
const CHUNK: i64 = 100_000;
/// Warm-up submits before the measured ones (connections, prepared statements, caches).
const WARMUP_JOBS: usize = 32;
/// Timed runs of each hot statement.
const SAMPLES: usize = 200;
/// How often the drain looks whether tasks are left.
const POLL: Duration = Duration::from_millis(100);
/// History spans this many days before the measurement.
const SPAN_DAYS: i64 = 30;

/// Both sides and how long the fill took.
#[derive(Debug, Serialize)]
pub struct HistoryStats {
    pub finished_jobs: usize,
    pub fill_seconds: f64,
    pub analyze_seconds: f64,
    /// PostgreSQL's plan of the claim on the filled database.
    pub claim_plan: String,
    pub empty: Side,
    pub history: Side,
}

/// The measurements of one database.
#[derive(Debug, Serialize)]
pub struct Side {
    pub submit: SubmitStats,
    pub statements: Vec<StatementStats>,
    pub drain_tasks: usize,
    pub drain_tasks_per_second: f64,
}

/// Timings of one statement.
#[derive(Debug, Serialize)]
pub struct StatementStats {
    pub name: &'static str,
    pub samples: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// The hot statements as the orchestrator runs them, with `$1` the current time in ms and `$2` the
/// benchmark account's id (where used). The claim runs in a transaction that is rolled back.
const CLAIM: &str =
    "SELECT id FROM tasks WHERE state IN ('queued', 'retry_wait') AND run_after <= $1 \
                     ORDER BY run_after, created_at, idx LIMIT 32 FOR UPDATE SKIP LOCKED";
const STATEMENTS: &[(&str, &str)] = &[
    ("claim (32 runnable tasks, FOR UPDATE SKIP LOCKED)", CLAIM),
    (
        "expired leases",
        "SELECT id FROM tasks WHERE state = 'running' AND lease_expires_at < $1 \
         ORDER BY lease_expires_at LIMIT 100",
    ),
    (
        "stale queued tasks",
        "SELECT id FROM tasks WHERE state = 'queued' AND created_at < $1 - 3600000 LIMIT 100",
    ),
    (
        "tasks past their job's deadline",
        "SELECT t.id FROM jobs j JOIN tasks t ON t.job_id = j.id \
         WHERE j.state IN ('queued', 'running') AND j.deadline_at IS NOT NULL \
         AND j.deadline_at < $1 AND t.state IN ('queued', 'running', 'retry_wait') LIMIT 100",
    ),
    (
        "active-jobs limit of the account",
        "SELECT COUNT(DISTINCT COALESCE(batch_id, id)) FROM jobs \
         WHERE account_id = $2 AND state IN ('queued', 'running')",
    ),
    (
        "queue position of the newest job",
        "SELECT COUNT(*) FROM tasks WHERE state IN ('queued', 'retry_wait') \
         AND (created_at < $1 OR (created_at = $1 AND job_id < ''))",
    ),
    (
        "recent run time of a kind",
        "SELECT AVG(CAST(t.finished_at - t.started_at AS DOUBLE PRECISION)) FROM \
         (SELECT t.finished_at, t.started_at FROM tasks t JOIN jobs j ON j.id = t.job_id \
          WHERE j.kind = 'transform' AND t.state = 'succeeded' AND t.started_at IS NOT NULL \
          AND t.finished_at IS NOT NULL ORDER BY t.finished_at DESC LIMIT 50) t",
    ),
    (
        "job gauges (unfinished, and finished in the last minute)",
        "SELECT state, COUNT(*) FROM jobs WHERE state IN ('queued', 'running') GROUP BY state \
         UNION ALL SELECT state, COUNT(*) FROM jobs WHERE finished_at >= $1 - 60000 GROUP BY state",
    ),
    (
        "task gauges (unfinished, and finished in the last minute)",
        "SELECT state, COUNT(*) FROM tasks WHERE state IN ('queued', 'running', 'retry_wait') \
         GROUP BY state UNION ALL \
         SELECT state, COUNT(*) FROM tasks WHERE finished_at >= $1 - 60000 GROUP BY state",
    ),
];

/// Measures an empty database, then one with `args.history_jobs` finished jobs.
pub async fn measure(
    args: &RunArgs,
    databases: &mut Databases,
    objects: &str,
    processor_url: &str,
    source_url: &str,
) -> anyhow::Result<HistoryStats> {
    let (empty, _, _, _) = side(args, databases, objects, processor_url, source_url, 0).await?;
    eprintln!(
        "bench: empty database: submit p50 {:.2} ms p99 {:.2} ms, claim p50 {:.3} ms, drain {:.1} tasks/s",
        empty.submit.p50_ms,
        empty.submit.p99_ms,
        empty.statements[0].p50_ms,
        empty.drain_tasks_per_second
    );
    let (history, fill_seconds, analyze_seconds, claim_plan) = side(
        args,
        databases,
        objects,
        processor_url,
        source_url,
        args.history_jobs,
    )
    .await?;
    eprintln!(
        "bench: with {} finished jobs: submit p50 {:.2} ms p99 {:.2} ms, claim p50 {:.3} ms, drain {:.1} tasks/s",
        args.history_jobs,
        history.submit.p50_ms,
        history.submit.p99_ms,
        history.statements[0].p50_ms,
        history.drain_tasks_per_second
    );
    Ok(HistoryStats {
        finished_jobs: args.history_jobs,
        fill_seconds,
        analyze_seconds,
        claim_plan,
        empty,
        history,
    })
}

/// One database: onboard, fill with `finished` jobs, submit, time the statements, drain. Returns the
/// side, the fill and ANALYZE seconds and the claim's plan.
async fn side(
    args: &RunArgs,
    databases: &mut Databases,
    objects: &str,
    processor_url: &str,
    source_url: &str,
    finished: usize,
) -> anyhow::Result<(Side, f64, f64, String)> {
    let label = if finished == 0 { "empty" } else { "history" };
    let database_url = databases.fresh(label).await?;
    // A first replica migrates the schema and onboards the accounts, then stops, so that the measured
    // replicas start on the filled and analysed tables.
    let setup = pipeline::start_replica(args, &database_url, objects, processor_url, 0).await?;
    let key = {
        let channel = world::connect(&setup.url()).await?;
        let balance = i64::try_from(args.jobs).unwrap_or(i64::MAX / 2) + 10;
        world::onboard(&channel, &[(ACCOUNT, balance), (WARMUP, 100)]).await?
    };
    setup.stop().await.ok();

    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url)
        .await
        .with_context(|| format!("connecting to {database_url}"))?;
    let (tenant_id, account_id): (String, String) =
        sqlx::query_as("SELECT tenant_id, id FROM accounts WHERE external_id = $1")
            .bind(ACCOUNT)
            .fetch_one(&pool)
            .await
            .context("reading the benchmark account")?;
    let (mut fill_seconds, mut analyze_seconds) = (0.0, 0.0);
    if finished > 0 {
        let t = Instant::now();
        fill(&pool, &tenant_id, &account_id, finished).await?;
        fill_seconds = t.elapsed().as_secs_f64();
        let t = Instant::now();
        // VACUUM as well, so that the measured runs neither pay for the first reads of the new rows
        // (hint bits) nor share the machine with autovacuum's first pass over them.
        sqlx::raw_sql("VACUUM ANALYZE")
            .execute(&pool)
            .await
            .context("VACUUM ANALYZE")?;
        analyze_seconds = t.elapsed().as_secs_f64();
        eprintln!(
            "bench: filled {finished} finished jobs in {fill_seconds:.1} s (ANALYZE {analyze_seconds:.1} s)"
        );
    }
    // Both sides start measuring with nothing left for the checkpointer to write: a database that
    // has held its history for a while is not writing a bulk load out in the background.
    sqlx::raw_sql("CHECKPOINT")
        .execute(&pool)
        .await
        .context("CHECKPOINT")?;

    let api = pipeline::start_replica(args, &database_url, objects, processor_url, 0).await?;
    let url = api.url();
    let warm = pipeline::submit_all(
        &url,
        &key,
        &[WARMUP.to_string()],
        WARMUP_JOBS,
        args.clients,
        source_url,
    )
    .await?;
    anyhow::ensure!(
        warm.errors == 0,
        "warm-up submits failed: {:?}",
        warm.first_error
    );
    let submitted = pipeline::submit_all(
        &url,
        &key,
        &[ACCOUNT.to_string()],
        args.jobs,
        args.clients,
        source_url,
    )
    .await?;
    anyhow::ensure!(
        submitted.errors == 0,
        "submits failed: {:?}",
        submitted.first_error
    );

    let mut statements = Vec::with_capacity(STATEMENTS.len());
    for (name, sql) in STATEMENTS {
        statements.push(time_statement(&pool, name, sql, &account_id).await?);
    }
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {CLAIM}"))
        .bind(now_ms())
        .fetch_all(&pool)
        .await
        .context("EXPLAIN of the claim")?;

    let (drain_tasks, drain_tasks_per_second) =
        drain(args, &pool, &database_url, objects, processor_url).await?;
    api.stop().await.ok();
    pool.close().await;
    Ok((
        Side {
            submit: submitted.stats(args.jobs),
            statements,
            drain_tasks,
            drain_tasks_per_second,
        },
        fill_seconds,
        analyze_seconds,
        plan.join("\n"),
    ))
}

/// Inserts `n` finished jobs, their tasks, events and ledger charges, `CHUNK` jobs per statement.
/// Every tenth job is the benchmark account's; the others belong to 2,000 accounts of 50 tenants.
/// One job in twenty failed and one in twenty was cancelled; one in 25 had a deadline and one in
/// 100 came in a batch. Their times spread over the `SPAN_DAYS` days before now.
async fn fill(pool: &PgPool, tenant_id: &str, account_id: &str, n: usize) -> anyhow::Result<()> {
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    let span = SPAN_DAYS * 24 * 3_600_000;
    let start = now_ms() - span - 60_000;
    let step = (span / n).max(1);
    // `$1`..`$2`: the jobs; `$3`, `$4`: the benchmark tenant and account; `$5` + i × `$6`: creation.
    let job_id = uuid_v7("$5::bigint + i * $6::bigint", "history-job-");
    let common = format!(
        "WITH h AS (SELECT i, \
         {job_id} AS job_id, \
         CASE WHEN i % 10 = 0 THEN $3 ELSE md5('history-tenant-' || (i % 50))::uuid::text END AS tenant_id, \
         CASE WHEN i % 10 = 0 THEN $4 ELSE md5('history-account-' || (i % 2000))::uuid::text END AS account_id, \
         CASE WHEN i % 10 = 0 THEN 'bench' ELSE 'history-' || (i % 2000) END AS account, \
         CASE (i / 10) % 20 WHEN 0 THEN 'failed' WHEN 1 THEN 'cancelled' ELSE 'succeeded' END AS state, \
         $5::bigint + i * $6::bigint AS created_at \
         FROM generate_series($1::bigint, $2::bigint) AS i) "
    );
    let (task_id, charge_id) = (
        uuid_v7("created_at", "history-task-"),
        uuid_v7("created_at", "history-charge-"),
    );
    let statements = [
        String::from("INSERT INTO jobs (id, tenant_id, account_id, account, kind, state, params, labels, \
         unit_price, cost, refunded, last_sequence, created_at, updated_at, finished_at, deadline_at, \
         family, batch_id) \
         SELECT job_id, tenant_id, account_id, account, 'transform', state, \
         decode(md5('p' || i) || md5('q' || i), 'hex'), '{}', 1, 1, \
         CASE WHEN state = 'succeeded' THEN 0 ELSE 1 END, 3, created_at, created_at + 2000, \
         created_at + 2000, CASE WHEN i % 25 = 0 THEN created_at + 60000 END, '', \
         CASE WHEN i % 100 = 7 THEN 'history-batch-' || (i / 1000) END FROM h"),
        format!("INSERT INTO tasks (id, job_id, idx, source, state, attempts, stage, percent, outputs, \
         failure_code, failure_message, from_cache, run_after, created_at, started_at, finished_at) \
         SELECT {task_id}, job_id, 0, \
         decode(repeat(md5('s' || i), 3), 'hex'), state, \
         CASE WHEN state = 'cancelled' THEN 0 ELSE 1 END, 'done', 100, \
         CASE WHEN state = 'succeeded' THEN decode(repeat(md5('o' || i), 4), 'hex') END, \
         CASE WHEN state = 'failed' THEN 3002 END, \
         CASE WHEN state = 'failed' THEN 'the source could not be downloaded' END, false, \
         created_at, created_at, CASE WHEN state = 'cancelled' THEN NULL ELSE created_at + 500 END, \
         created_at + 2000 FROM h"),
        String::from("INSERT INTO job_events (job_id, tenant_id, account_id, sequence, payload, created_at) \
         SELECT job_id, tenant_id, account_id, s, decode(md5('e' || i || '-' || s), 'hex'), \
         created_at + s * 600 FROM h CROSS JOIN generate_series(1, 3) AS s"),
        format!("INSERT INTO ledger (id, account_id, kind, amount, reason, unique_key, job_id, task_id, created_at) \
         SELECT {charge_id}, account_id, 'charge', -1, 'job', \
         'charge:' || job_id, job_id, NULL, created_at FROM h"),
    ];
    // The other tenants and their accounts exist, as every job's do.
    for sql in [
        "INSERT INTO tenants (id, name, created_at) \
         SELECT md5('history-tenant-' || k)::uuid::text, 'history-' || k, $1 \
         FROM generate_series(0, 49) AS k",
        "INSERT INTO accounts (id, tenant_id, external_id, balance, member, created_at, submits) \
         SELECT md5('history-account-' || a)::uuid::text, md5('history-tenant-' || (a % 50))::uuid::text, \
         'history-' || a, 0, false, $1, 0 FROM generate_series(0, 1999) AS a",
    ] {
        sqlx::query(sql)
            .bind(start)
            .execute(pool)
            .await
            .context("adding the history's tenants and accounts")?;
    }
    let mut lo = 0;
    while lo < n {
        let hi = (lo + CHUNK).min(n) - 1;
        for sql in &statements {
            sqlx::query(&format!("{common}{sql}"))
                .bind(lo)
                .bind(hi)
                .bind(tenant_id)
                .bind(account_id)
                .bind(start)
                .bind(step)
                .execute(pool)
                .await
                .with_context(|| format!("filling jobs {lo}..={hi}"))?;
        }
        lo = hi + 1;
    }
    // The webhook outbox starts after the history, as it would have read it long ago.
    sqlx::query(
        "UPDATE webhook_cursor SET (txid, event_id) = \
         (SELECT txid, id FROM job_events ORDER BY txid DESC, id DESC LIMIT 1) WHERE id = 1",
    )
    .execute(pool)
    .await
    .context("moving the webhook cursor past the history")?;
    Ok(())
}

/// A UUIDv7 as SQL, as the orchestrator names its rows: the milliseconds of `created_at` (an SQL
/// expression) first, so ids sort by creation, then bits derived from `seed || i`.
fn uuid_v7(created_at: &str, seed: &str) -> String {
    let random = format!("md5('{seed}' || i)");
    format!(
        "((lpad(to_hex({created_at}), 12, '0') || '7' || substr({random}, 1, 3) || '8' \
         || substr({random}, 4, 15))::uuid)::text"
    )
}

/// Runs `sql` `SAMPLES` times, each in a transaction that is rolled back.
async fn time_statement(
    pool: &PgPool,
    name: &'static str,
    sql: &str,
    account_id: &str,
) -> anyhow::Result<StatementStats> {
    let uses_account = sql.contains("$2");
    let mut times = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let mut txn = pool.begin().await?;
        let mut query = sqlx::query(sql).bind(now_ms());
        if uses_account {
            query = query.bind(account_id);
        }
        let t = Instant::now();
        query
            .fetch_all(&mut *txn)
            .await
            .with_context(|| format!("timing {name}"))?;
        times.push(ms(t.elapsed()));
        txn.rollback().await?;
    }
    times.sort_by(f64::total_cmp);
    Ok(StatementStats {
        name,
        samples: times.len(),
        mean_ms: mean(&times),
        p50_ms: percentile(&times, 0.50),
        p99_ms: percentile(&times, 0.99),
    })
}

/// Starts a dispatching replica and waits until no task is left unfinished; returns the tasks it
/// finished and their rate from its start to the last finish.
async fn drain(
    args: &RunArgs,
    pool: &PgPool,
    database_url: &str,
    objects: &str,
    processor_url: &str,
) -> anyhow::Result<(usize, f64)> {
    let started = now_ms();
    let worker = pipeline::start_replica(
        args,
        database_url,
        objects,
        processor_url,
        args.dispatch_concurrency,
    )
    .await?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM tasks WHERE state IN ('queued', 'running', 'retry_wait')",
        )
        .fetch_one(pool)
        .await?;
        if left == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} tasks still unfinished after {} s",
            args.timeout_seconds
        );
        tokio::time::sleep(POLL).await;
    }
    worker.stop().await.ok();
    let row = sqlx::query(
        "SELECT COUNT(*), MAX(finished_at) FROM tasks WHERE finished_at >= $1 AND state = 'succeeded'",
    )
    .bind(started)
    .fetch_one(pool)
    .await?;
    let tasks: i64 = row.try_get(0)?;
    let last: Option<i64> = row.try_get(1)?;
    let seconds = last.map_or(0.0, |l| (l - started) as f64 / 1000.0);
    let rate = if seconds > 0.0 {
        tasks as f64 / seconds
    } else {
        0.0
    };
    Ok((usize::try_from(tasks).unwrap_or(0), rate))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
