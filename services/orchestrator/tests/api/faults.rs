//! Faults of the parts around the orchestrator, played with the real servers: its PostgreSQL
//! stopped (every connection dropped at once) and started again while tasks run, and its
//! S3-compatible store down while a task stores its outputs. No job is lost, none is charged
//! twice, and the balance equals the ledger afterwards.

use std::time::Duration;

use atelier_proto::v1 as pb;
use atelier_storage::testing::S3Server;
use atelier_storage::Storage;
use atelier_testkit::PrivatePostgres;
use tokio::time::Instant;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use atelier_orchestrator::Config;

use crate::helpers::{
    as_account, bearer, code_of, spawn_app_at, spawn_app_with, transform_job, Backend, Tenant,
    TestApp,
};
use crate::on_both_databases;

/// Jobs running when PostgreSQL goes away.
const JOBS: usize = 4;

/// Polls `check` every 50 ms until it holds; fails after `limit`, saying `what`.
async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The health of the whole server, as a load balancer asks for it.
async fn health(app: &TestApp) -> Option<ServingStatus> {
    let answer = HealthClient::new(app.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .ok()?;
    ServingStatus::try_from(answer.into_inner().status).ok()
}

/// Every ledger entry of the account, read through the API.
async fn ledger(app: &TestApp, tenant: &Tenant, account: &str) -> Vec<pb::LedgerEntry> {
    let mut entries = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .accounts
            .clone()
            .list_ledger(as_account(
                pb::ListLedgerRequest {
                    page_size: 100,
                    page_token: token,
                    ..Default::default()
                },
                &tenant.key,
                account,
            ))
            .await
            .expect("ledger")
            .into_inner();
        entries.extend(page.entries);
        if page.next_page_token.is_empty() {
            return entries;
        }
        token = page.next_page_token;
    }
}

/// The account paid each job once, got nothing back, and its balance is the sum of its ledger.
async fn charged_once(app: &TestApp, tenant: &Tenant, account: &str, granted: i64, jobs: &[&str]) {
    let entries = ledger(app, tenant, account).await;
    let charges: Vec<&pb::LedgerEntry> = entries.iter().filter(|e| e.kind == "charge").collect();
    assert_eq!(charges.len(), jobs.len(), "one charge per job: {entries:?}");
    for job in jobs {
        assert_eq!(
            charges.iter().filter(|c| c.job_id == *job).count(),
            1,
            "job {job} charged once: {entries:?}"
        );
    }
    assert!(
        entries.iter().all(|e| e.kind != "refund"),
        "nothing refunded: {entries:?}"
    );
    let balance = app.account(tenant, account).await.balance;
    assert_eq!(
        balance,
        app.ledger_sum(tenant, account).await,
        "balance = ledger"
    );
    assert_eq!(balance, granted - jobs.len() as i64);
}

/// The recorded calls of the job's webhooks.
async fn deliveries(app: &TestApp, tenant: &Tenant, job_id: &str) -> Vec<pb::WebhookDelivery> {
    app.accounts
        .clone()
        .list_webhook_deliveries(bearer(
            pb::ListWebhookDeliveriesRequest {
                job_id: job_id.into(),
                page_size: 100,
                ..Default::default()
            },
            &tenant.key,
        ))
        .await
        .expect("deliveries")
        .into_inner()
        .deliveries
}

/// A port that was free a moment ago.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The value of one sample of the orchestrator's `/metrics`, 0 when absent.
async fn metric(app: &TestApp, sample: &str) -> u64 {
    let Some(addr) = app.orchestrator.metrics_addr() else {
        panic!("the metrics port is on")
    };
    let Ok(response) = reqwest::get(format!("http://{addr}/metrics")).await else {
        return 0;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The pair on a private PostgreSQL whose health is checked every 0.2 s.
async fn spawn_on_postgres(pg: &PrivatePostgres, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let root = tempfile::tempdir().expect("temp dir");
    spawn_app_at(
        root,
        pg.url(),
        |c| {
            c.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
            c.database_check_seconds = 0.2;
            c.lease_seconds = 2.0;
            c.webhook_allow_private = vec!["127.0.0.1/32".parse().expect("cidr")];
            tweak(c);
        },
        |p| {
            // Every task runs at once, its source held as long as the test needs.
            p.max_concurrency = JOBS as u32;
            p.download_timeout = Duration::from_secs(120);
            // Each attempt's work is its own: nothing served from the cache (and refunded).
            p.content_cache = false;
        },
    )
    .await
}

/// Submits `n` transforms of held sources, each ending with a call of `callback` when given;
/// returns once every task's processor asks for its source.
async fn held_jobs(
    app: &TestApp,
    tenant: &Tenant,
    n: usize,
    callback: Option<&str>,
) -> Vec<String> {
    let mut jobs = Vec::new();
    for i in 0..n {
        let url = app.sources.url(&format!("/held/{i}.jpg"));
        let mut request = transform_job(&[url]);
        request.callback_url = callback.unwrap_or_default().to_string();
        let job = app.submit(tenant, "alice", request).await.expect("submit");
        jobs.push(job.id);
    }
    eventually(
        Duration::from_secs(30),
        "every task reaches the processor",
        || async { app.sources.held_requests() as usize == n },
    )
    .await;
    jobs
}

/// Attempts this replica ended, by result.
async fn attempts_ended(app: &TestApp, result: &str) -> u64 {
    metric(
        app,
        &format!("atelier_task_attempts_total{{kind=\"transform\",result=\"{result}\"}}"),
    )
    .await
}

/// Stops PostgreSQL and waits until the replica says NOT_SERVING.
async fn take_the_database_away(app: &TestApp, pg: &PrivatePostgres) {
    assert_eq!(health(app).await, Some(ServingStatus::Serving));
    pg.stop().await;
    eventually(
        Duration::from_secs(10),
        "health turns NOT_SERVING",
        || async { health(app).await == Some(ServingStatus::NotServing) },
    )
    .await;
}

/// Starts PostgreSQL again on its port and waits until the replica says SERVING.
async fn bring_the_database_back(app: &TestApp, pg: &PrivatePostgres) {
    pg.restart().await;
    eventually(
        Duration::from_secs(10),
        "health turns SERVING again",
        || async { health(app).await == Some(ServingStatus::Serving) },
    )
    .await;
}

/// Every job succeeded in its first attempt, its outputs stored, each charged once.
async fn succeeded_in_one_attempt(app: &TestApp, tenant: &Tenant, jobs: &[String], granted: i64) {
    for id in jobs {
        let job = app.finish(tenant, "alice", id).await;
        assert_eq!(job.state(), pb::JobState::Succeeded, "{job:?}");
        let task = &job.tasks[0];
        // The work done in the outage was recorded, not done again.
        assert_eq!(task.attempts, 1, "{task:?}");
        let output = &task.outputs[0];
        assert!(output.key.ends_with("/1/image.webp"), "{}", output.key);
        assert!(app.storage.exists(&output.key).await.expect("exists"));
    }
    let ids: Vec<&str> = jobs.iter().map(String::as_str).collect();
    charged_once(app, tenant, "alice", granted, &ids).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_loses_no_job_and_charges_none_twice() {
    let pg = PrivatePostgres::start().await;
    // Calls fail fast while the server is away, so the attempts ending in the outage find no
    // database and must record their end once it is back.
    let app = spawn_on_postgres(&pg, |c| c.database_acquire_timeout_seconds = 1.0).await;
    let tenant = app.tenant("shop").await;
    app.member(&tenant, "alice", 10).await;
    // Callbacks go to a port nobody listens on: each call is tried and recorded as failed.
    let callback = format!("http://127.0.0.1:{}/callback", closed_port());
    let jobs = held_jobs(&app, &tenant, JOBS, Some(&callback)).await;

    take_the_database_away(&app, &pg).await;
    let refused = app
        .jobs
        .clone()
        .get_job(as_account(
            pb::GetJobRequest {
                job_id: jobs[0].clone(),
            },
            &tenant.key,
            "alice",
        ))
        .await
        .expect_err("no database, no job");
    assert_eq!(code_of(&refused), 1009, "{refused:?}");

    // The attempts end while the database is away.
    app.sources.release_held();
    eventually(Duration::from_secs(30), "every attempt ends", || async {
        attempts_ended(&app, "succeeded").await == JOBS as u64
    })
    .await;
    // The database stays away a while after the attempts ended: longer than a call waits for a
    // connection (1 s), so recording their end fails at first, and past their leases (2 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    bring_the_database_back(&app, &pg).await;
    succeeded_in_one_attempt(&app, &tenant, &jobs, 10).await;
    // The webhook sender carried on: each job's end went out to its callback after the outage.
    for id in &jobs {
        eventually(Duration::from_secs(20), "the job's end is sent", || async {
            !deliveries(&app, &tenant, id).await.is_empty()
        })
        .await;
    }

    // The same replica, never restarted, takes new work.
    let after = app
        .submit(
            &tenant,
            "alice",
            transform_job(&[app.sources.url("/image.jpg")]),
        )
        .await
        .expect("submit after the restart");
    let after = app.finish(&tenant, "alice", &after.id).await;
    assert_eq!(after.state(), pb::JobState::Succeeded, "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_longer_than_an_attempts_deadline_fails_no_attempt() {
    let pg = PrivatePostgres::start().await;
    // A call waits for the database as long as by default (30 s), longer than an attempt may take.
    let deadline = Duration::from_secs(8);
    let app = spawn_on_postgres(&pg, |c| {
        c.attempt_timeout_seconds = deadline.as_secs_f64();
    })
    .await;
    let tenant = app.tenant("shop").await;
    app.member(&tenant, "alice", 10).await;
    let jobs = held_jobs(&app, &tenant, 2, None).await;
    let claimed = Instant::now();

    take_the_database_away(&app, &pg).await;
    // The processors report their progress while the database is away; the attempts do not wait.
    app.sources.release_held();
    eventually(Duration::from_secs(30), "every attempt ends", || async {
        attempts_ended(&app, "succeeded").await + attempts_ended(&app, "failed").await == 2
    })
    .await;
    assert_eq!(attempts_ended(&app, "failed").await, 0);
    // The outage outlasts the attempts' deadline.
    tokio::time::sleep((deadline + Duration::from_secs(1)).saturating_sub(claimed.elapsed())).await;
    bring_the_database_back(&app, &pg).await;
    succeeded_in_one_attempt(&app, &tenant, &jobs, 10).await;
}

/// The pair on the test's own s3s-fs; `retry_base` and `storage_retry` tune the two retries.
async fn spawn_on_s3(
    backend: Backend,
    s3: &S3Server,
    retry_base: f64,
    storage_retry: Duration,
) -> TestApp {
    let (o_options, p_options) = (s3.options(), s3.options());
    let (o_location, p_location) = (s3.location(), s3.location());
    spawn_app_with(
        backend,
        move |c| {
            c.storage = o_location;
            c.s3 = o_options;
            c.retry_base_seconds = retry_base;
        },
        move |p| {
            p.storage = p_location;
            p.s3 = p_options;
            p.storage_retry = storage_retry;
            p.download_timeout = Duration::from_secs(120);
            p.content_cache = false;
        },
    )
    .await
}

/// Reads the job's events until one matches `wanted`; fails on a task that failed for good.
async fn watch_until<T>(
    app: &TestApp,
    tenant: &Tenant,
    job_id: &str,
    mut wanted: impl FnMut(&pb::job_event::Event) -> Option<T>,
) -> T {
    let mut events = app
        .jobs
        .clone()
        .watch_job(as_account(
            pb::WatchJobRequest {
                job_id: job_id.into(),
                after_sequence: 0,
            },
            &tenant.key,
            "alice",
        ))
        .await
        .expect("watch")
        .into_inner();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let event = tokio::time::timeout_at(deadline, events.message())
            .await
            .expect("the event in time")
            .expect("stream")
            .expect("the job is not over")
            .event
            .expect("an event");
        if let pb::job_event::Event::TaskState(change) = &event {
            assert_ne!(
                change.state(),
                pb::TaskState::Failed,
                "the task failed: {change:?}"
            );
        }
        if let Some(found) = wanted(&event) {
            return found;
        }
    }
}

/// The job succeeded after `attempts`, its outputs in the bucket, charged once.
async fn succeeded_in_the_bucket(
    app: &TestApp,
    s3: &S3Server,
    tenant: &Tenant,
    job_id: &str,
    attempts: u32,
) {
    let bucket = Storage::open(&s3.location(), &s3.options())
        .await
        .expect("bucket");
    let done = app.finish(tenant, "alice", job_id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    let task = &done.tasks[0];
    assert_eq!(task.attempts, attempts, "{task:?}");
    let output = &task.outputs[0];
    assert!(
        output.key.ends_with(&format!("/{attempts}/image.webp")),
        "{}",
        output.key
    );
    assert!(bucket
        .exists(&output.key)
        .await
        .expect("output in the bucket"));
    let thumb = output.thumbnail.as_ref().expect("thumbnail");
    assert!(bucket
        .exists(&thumb.key)
        .await
        .expect("thumbnail in the bucket"));
    charged_once(app, tenant, "alice", 5, &[job_id]).await;
}

on_both_databases!(
    an_object_store_outage_costs_an_attempt_not_the_task,
    a_short_object_store_outage_is_waited_out_within_the_attempt,
);

/// The store stays down longer than the processor tries a write (2 s here): the attempt fails with
/// 3009 and the next one, a second later, stores the outputs.
async fn an_object_store_outage_costs_an_attempt_not_the_task(backend: Backend) {
    let mut s3 = S3Server::start().await;
    let app = spawn_on_s3(backend, &s3, 1.0, Duration::from_secs(2)).await;
    let tenant = app.tenant("shop").await;
    app.member(&tenant, "alice", 5).await;
    let job = held_jobs(&app, &tenant, 1, None).await.remove(0);

    // The store goes down before the task stores anything; then the source arrives.
    s3.stop();
    app.sources.release_held();
    let failure = watch_until(&app, &tenant, &job, |event| match event {
        pb::job_event::Event::TaskState(change) if change.state() == pb::TaskState::RetryWait => {
            Some(change.clone())
        }
        _ => None,
    })
    .await;
    let reason = failure.failure.clone().expect("a failure");
    assert_eq!(reason.code, 3009, "{reason:?}");
    assert_eq!(reason.reason, "STORAGE_FAILED");
    assert_eq!(failure.attempts, 1);
    s3.restart().await;
    succeeded_in_the_bucket(&app, &s3, &tenant, &job, 2).await;
}

/// The store comes back while the processor still tries the write: the attempt goes on as if
/// nothing happened, and the job's log says why it was slow.
async fn a_short_object_store_outage_is_waited_out_within_the_attempt(backend: Backend) {
    let mut s3 = S3Server::start().await;
    let app = spawn_on_s3(backend, &s3, 1.0, Duration::from_secs(60)).await;
    let tenant = app.tenant("shop").await;
    app.member(&tenant, "alice", 5).await;
    let job = held_jobs(&app, &tenant, 1, None).await.remove(0);

    s3.stop();
    app.sources.release_held();
    // Live, while the task still runs: well before a watcher's 10 s safety-net re-read.
    let wanted = watch_until(&app, &tenant, &job, |event| match event {
        pb::job_event::Event::TaskState(change) if change.state() == pb::TaskState::RetryWait => {
            panic!("the attempt failed: {change:?}")
        }
        pb::job_event::Event::Log(line) if line.message.contains("trying again") => {
            Some(line.clone())
        }
        _ => None,
    });
    let line = tokio::time::timeout(Duration::from_secs(8), wanted)
        .await
        .expect("the job's log says so at once");
    assert_eq!(line.level, "warn");
    assert_eq!(line.origin, "processor");
    s3.restart().await;
    succeeded_in_the_bucket(&app, &s3, &tenant, &job, 1).await;
}
