//! Real processes killed in the middle of a task: nothing is lost, nothing recorded twice, nothing
//! refunded twice. Binaries come from the workspace build (`cargo test --workspace` builds them).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_proto::v1 as pb;
use atelier_proto::v1::job_service_client::JobServiceClient;
use tonic::transport::Channel;

use crate::helpers::{as_account, fresh_database, transform_job, Backend, ADMIN, SERVICE};

/// A child process that is killed when dropped, with the JSON log lines it wrote so far.
struct Process(Child, Arc<Mutex<Vec<serde_json::Value>>>);

impl Process {
    /// Waits (up to 30 s) until some log line satisfies `found`.
    async fn wait_for_log(&self, what: &str, found: impl Fn(&serde_json::Value) -> bool) {
        for _ in 0..600 {
            if self.1.lock().expect("lock").iter().any(&found) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no log line {what}: {:#?}", self.1.lock().expect("lock"));
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn binary(name: &str) -> PathBuf {
    // Both binaries land in the same folder of the workspace build as this package's own binary.
    let own = PathBuf::from(env!("CARGO_BIN_EXE_atelier-orchestrator"));
    let path = own.parent().map(|dir| dir.join(name)).unwrap_or_default();
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (cargo build --workspace)",
        path.display()
    );
    path
}

/// Starts a service binary on a free port of its own choosing (`--listen 127.0.0.1:0`) and reads the
/// address it bound from its JSON log; the rest of its log is drained so it never blocks.
fn start_listening(mut command: Command) -> (Process, String) {
    let mut child = command
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(["--metrics-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start service");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&logs);
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut tx = Some(tx);
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if let (Some(addr), true) = (
                json["addr"].as_str(),
                json["message"]
                    .as_str()
                    .is_some_and(|m| m.ends_with("listening") && !m.starts_with("metrics")),
            ) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr.to_string());
                }
            }
            kept.lock().expect("lock").push(json);
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the service logged its address");
    (Process(child, logs), format!("http://{addr}"))
}

/// Connects once the server answers health checks (readiness polling, bounded).
async fn connect_when_ready(url: &str) -> Channel {
    for _ in 0..300 {
        if let Ok(channel) = Channel::from_shared(url.to_string())
            .expect("url")
            .connect()
            .await
        {
            let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
            if let Ok(r) = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: String::new(),
                })
                .await
            {
                if r.into_inner().status
                    == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
                {
                    return channel;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{url} never became ready");
}

fn spawn_processor(objects: &str) -> (Process, String) {
    let mut command = Command::new(binary("atelier-processor"));
    command.args(["--storage", objects, "--service-token", SERVICE]);
    command.args([
        "--allow-private-sources",
        "127.0.0.1/32",
        "--download-timeout",
        "5",
    ]);
    start_listening(command)
}

fn spawn_orchestrator(
    database_url: &str,
    objects: &str,
    processors: &str,
    extra: &[&str],
) -> (Process, String) {
    let mut command = Command::new(binary("atelier-orchestrator"));
    command.args(["--database-url", database_url, "--storage", objects]);
    command.args([
        "--admin-token",
        ADMIN,
        "--service-token",
        SERVICE,
        "--processor",
        processors,
    ]);
    command.args([
        "--lease-seconds",
        "2",
        "--poll-seconds",
        "0.05",
        "--retry-base-seconds",
        "0.05",
    ]);
    command.args(extra);
    start_listening(command)
}

struct World {
    sources: atelier_testkit::SourceServer,
    database_url: String,
    objects: String,
    _root: tempfile::TempDir,
}

async fn world() -> World {
    let root = tempfile::tempdir().expect("temp dir");
    let objects = root.path().join("objects").display().to_string();
    let database_url = fresh_database(Backend::Postgres, root.path()).await;
    World {
        sources: atelier_testkit::SourceServer::start().await,
        database_url,
        objects,
        _root: root,
    }
}

/// Onboards a tenant and a member with `balance` through the API at `channel`; returns the key.
async fn onboard(channel: &Channel, balance: i64) -> String {
    use crate::helpers::admin;
    let mut accounts =
        atelier_proto::v1::account_service_client::AccountServiceClient::new(channel.clone());
    let tenant = accounts
        .create_tenant(admin(pb::CreateTenantRequest {
            name: "shop".into(),
        }))
        .await
        .expect("tenant")
        .into_inner();
    let key = accounts
        .create_api_key(admin(pb::CreateApiKeyRequest {
            tenant_id: tenant.id.clone(),
            account: String::new(),
        }))
        .await
        .expect("key")
        .into_inner()
        .secret;
    accounts
        .upsert_account(admin(pb::UpsertAccountRequest {
            tenant_id: tenant.id.clone(),
            external_id: "alice".into(),
        }))
        .await
        .expect("account");
    accounts
        .set_membership(admin(pb::SetMembershipRequest {
            tenant_id: tenant.id.clone(),
            account: "alice".into(),
            active: true,
            expires_at: None,
        }))
        .await
        .expect("membership");
    accounts
        .grant_quota(admin(pb::GrantQuotaRequest {
            tenant_id: tenant.id,
            account: "alice".into(),
            amount: balance,
            ..Default::default()
        }))
        .await
        .expect("grant");
    key
}

async fn wait_terminal(jobs: &mut JobServiceClient<Channel>, key: &str, job_id: &str) -> pb::Job {
    watch_to_end(jobs, key, job_id).await.0
}

/// Every event of the job until its end, then the job as GetJob reads it.
async fn watch_to_end(
    jobs: &mut JobServiceClient<Channel>,
    key: &str,
    job_id: &str,
) -> (pb::Job, Vec<pb::JobEvent>) {
    let mut stream = jobs
        .watch_job(as_account(
            pb::WatchJobRequest {
                job_id: job_id.into(),
                after_sequence: 0,
            },
            key,
            "alice",
        ))
        .await
        .expect("watch")
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("in time")
        .expect("stream")
    {
        events.push(event);
    }
    let job = jobs
        .get_job(as_account(
            pb::GetJobRequest {
                job_id: job_id.into(),
            },
            key,
            "alice",
        ))
        .await
        .expect("get")
        .into_inner();
    (job, events)
}

/// The failures recorded for the job's attempts, in order, from its task events.
fn attempt_failures(events: &[pb::JobEvent]) -> Vec<pb::Failure> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::job_event::Event::TaskState(t)) => t.failure.clone(),
            _ => None,
        })
        .collect()
}

async fn balance(channel: &Channel, key: &str) -> (i64, i64) {
    let mut accounts =
        atelier_proto::v1::account_service_client::AccountServiceClient::new(channel.clone());
    let account = accounts
        .get_account(as_account(pb::GetAccountRequest::default(), key, "alice"))
        .await
        .expect("account")
        .into_inner();
    let ledger = accounts
        .list_ledger(as_account(
            pb::ListLedgerRequest {
                page_size: 500,
                ..Default::default()
            },
            key,
            "alice",
        ))
        .await
        .expect("ledger")
        .into_inner();
    (
        account.balance,
        ledger.entries.iter().map(|e| e.amount).sum(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_mid_task_is_replaced_by_another() {
    let w = world().await;
    let (mut p1, p1_url) = spawn_processor(&w.objects);
    let (_p2, p2_url) = spawn_processor(&w.objects);
    connect_when_ready(&p1_url).await;
    connect_when_ready(&p2_url).await;
    // The first attempt goes to the first processor in the list.
    let processors = format!("{p1_url},{p2_url}");
    let (_o, o_url) = spawn_orchestrator(&w.database_url, &w.objects, &processors, &[]);
    let channel = connect_when_ready(&o_url).await;
    let key = onboard(&channel, 5).await;
    let mut jobs = JobServiceClient::new(channel.clone());
    let job = jobs
        .submit_job(as_account(
            transform_job(&[w.sources.url("/stall-once/p")]),
            &key,
            "alice",
        ))
        .await
        .expect("submit")
        .into_inner();
    w.sources
        .wait_for(atelier_testkit::Seen::Request("/stall-once/p".into()))
        .await;
    p1.0.kill().expect("kill -9 the processor");
    let (done, events) = watch_to_end(&mut jobs, &key, &job.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    assert_eq!(done.tasks[0].attempts, 2);
    assert_eq!(done.tasks[0].outputs.len(), 1, "outputs recorded once");
    let failures = attempt_failures(&events);
    assert_eq!(failures.len(), 1, "{failures:#?}");
    assert_eq!(
        (failures[0].code, failures[0].reason.as_str()),
        (1009, "UNAVAILABLE"),
        "the first attempt lost its connection: {}",
        failures[0].message
    );
    assert_eq!(balance(&channel, &key).await, (4, 4));
}

/// With no attempt left, the lost connection is what the task failed with: 1009 UNAVAILABLE, as the
/// lease sweeper records a lost processor, not 1006 INTERNAL. The unit is refunded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_processor_killed_mid_task_is_recorded_as_unavailable() {
    let w = world().await;
    let (mut p, processor) = spawn_processor(&w.objects);
    connect_when_ready(&processor).await;
    let (_o, o_url) = spawn_orchestrator(
        &w.database_url,
        &w.objects,
        &processor,
        &["--max-attempts", "1"],
    );
    let channel = connect_when_ready(&o_url).await;
    let key = onboard(&channel, 5).await;
    let mut jobs = JobServiceClient::new(channel.clone());
    let job = jobs
        .submit_job(as_account(
            transform_job(&[w.sources.url("/stall-once/u")]),
            &key,
            "alice",
        ))
        .await
        .expect("submit")
        .into_inner();
    w.sources
        .wait_for(atelier_testkit::Seen::Request("/stall-once/u".into()))
        .await;
    p.0.kill().expect("kill -9 the processor");
    let done = wait_terminal(&mut jobs, &key, &job.id).await;
    assert_eq!(done.state(), pb::JobState::Failed, "{done:?}");
    let task = &done.tasks[0];
    assert_eq!(task.attempts, 1);
    let failure = task.failure.as_ref().expect("a failure");
    assert_eq!(
        (failure.code, failure.reason.as_str()),
        (1009, "UNAVAILABLE"),
        "{}",
        failure.message
    );
    assert!(
        failure.message.contains("processor"),
        "says what was lost: {}",
        failure.message
    );
    assert_eq!(balance(&channel, &key).await, (5, 5), "refunded once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orchestrator_killed_mid_task_is_taken_over_after_its_lease() {
    let w = world().await;
    let (_p, processor) = spawn_processor(&w.objects);
    connect_when_ready(&processor).await;
    let (mut a, a_url) = spawn_orchestrator(&w.database_url, &w.objects, &processor, &[]);
    let channel_a = connect_when_ready(&a_url).await;
    let key = onboard(&channel_a, 5).await;
    let job = JobServiceClient::new(channel_a)
        .submit_job(as_account(
            transform_job(&[w.sources.url("/stall-once/o")]),
            &key,
            "alice",
        ))
        .await
        .expect("submit")
        .into_inner();
    w.sources
        .wait_for(atelier_testkit::Seen::Request("/stall-once/o".into()))
        .await;
    a.0.kill().expect("kill -9 replica A");
    let (_b, b_url) = spawn_orchestrator(&w.database_url, &w.objects, &processor, &[]);
    let channel_b = connect_when_ready(&b_url).await;
    let mut jobs = JobServiceClient::new(channel_b.clone());
    let done = wait_terminal(&mut jobs, &key, &job.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    assert_eq!(
        done.tasks[0].attempts, 2,
        "the lost attempt counts, the takeover succeeds"
    );
    assert_eq!(done.tasks[0].outputs.len(), 1);
    assert_eq!(balance(&channel_b, &key).await, (4, 4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_running_tasks_back() {
    let w = world().await;
    let (_p, processor) = spawn_processor(&w.objects);
    connect_when_ready(&processor).await;
    let (mut a, a_url) = spawn_orchestrator(
        &w.database_url,
        &w.objects,
        &processor,
        &["--shutdown-grace-seconds", "0.2"],
    );
    let channel_a = connect_when_ready(&a_url).await;
    let key = onboard(&channel_a, 5).await;
    let job = JobServiceClient::new(channel_a)
        .submit_job(as_account(
            transform_job(&[w.sources.url("/stall-once/s")]),
            &key,
            "alice",
        ))
        .await
        .expect("submit")
        .into_inner();
    w.sources
        .wait_for(atelier_testkit::Seen::Request("/stall-once/s".into()))
        .await;
    let status = Command::new("kill")
        .args(["-TERM", &a.0.id().to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let exit = a.0.wait().expect("replica A exits");
    assert!(exit.success(), "graceful shutdown exits 0: {exit:?}");
    // An API-only replica reads the job: the task was handed back, not left RUNNING.
    let (_b, b_url) = spawn_orchestrator(
        &w.database_url,
        &w.objects,
        &processor,
        &["--dispatch-concurrency", "0"],
    );
    let channel_b = connect_when_ready(&b_url).await;
    let seen = JobServiceClient::new(channel_b)
        .get_job(as_account(
            pb::GetJobRequest { job_id: job.id },
            &key,
            "alice",
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(seen.tasks[0].state(), pb::TaskState::Queued);
    assert_eq!(
        seen.tasks[0].attempts, 0,
        "a handed-back attempt is not spent"
    );
}

/// The caller's `traceparent` reaches the orchestrator and, through it, the processor: log lines of
/// both processes about the job carry its trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trace_context_flows_from_caller_to_processor_logs() {
    let w = world().await;
    let (processor, processor_url) = spawn_processor(&w.objects);
    let (orchestrator, url) = spawn_orchestrator(&w.database_url, &w.objects, &processor_url, &[]);
    let channel = connect_when_ready(&url).await;
    let key = onboard(&channel, 5).await;
    let mut jobs = JobServiceClient::new(channel.clone());
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut request = as_account(transform_job(&[w.sources.url("/image.jpg")]), &key, "alice");
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-00f067aa0ba902b7-01")
            .parse()
            .expect("ascii"),
    );
    let job = jobs.submit_job(request).await.expect("submit").into_inner();
    let job = wait_terminal(&mut jobs, &key, &job.id).await;
    assert_eq!(job.state(), pb::JobState::Succeeded);
    let carries = |line: &serde_json::Value| {
        let text = line.to_string();
        text.contains(trace_id) && text.contains(&job.id)
    };
    orchestrator
        .wait_for_log("of the orchestrator with the job and trace ids", carries)
        .await;
    processor
        .wait_for_log("of the processor with the job and trace ids", carries)
        .await;
}
