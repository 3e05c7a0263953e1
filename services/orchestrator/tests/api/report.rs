//! `ReportTask`: a worker outside Atelier, holding the service token, takes tasks and reports their
//! results, which a real processor fetches from a real HTTP server, checks and stores as outputs.

use atelier_proto::v1 as pb;
use atelier_testkit::source::Seen;
use sha2::{Digest, Sha256};
use tonic::Request;

use crate::helpers::{
    as_account, code_of, images, spawn_app_with, transform_job, Backend, TestApp, SERVICE,
};
use crate::on_both_databases;

/// A report as `account` of the tenant key, with `service` in `x-api-key` when given.
fn report_as(
    key: &str,
    account: &str,
    service: Option<&str>,
    message: pb::ReportTaskRequest,
) -> Request<pb::ReportTaskRequest> {
    let mut request = as_account(message, key, account);
    if let Some(token) = service {
        request
            .metadata_mut()
            .insert("x-api-key", token.parse().expect("ascii"));
    }
    request
}

fn reported(task_id: &str, state: pb::ReportedState, urls: &[String]) -> pb::ReportTaskRequest {
    pb::ReportTaskRequest {
        task_id: task_id.into(),
        state: state as i32,
        result_urls: urls.to_vec(),
        error_message: String::new(),
    }
}

async fn report(
    app: &TestApp,
    key: &str,
    account: &str,
    message: pb::ReportTaskRequest,
) -> Result<pb::Task, tonic::Status> {
    app.jobs
        .clone()
        .report_task(report_as(key, account, Some(SERVICE), message))
        .await
        .map(|r| r.into_inner())
}

async fn job(app: &TestApp, key: &str, account: &str, job_id: &str) -> pb::Job {
    app.jobs
        .clone()
        .get_job(as_account(
            pb::GetJobRequest {
                job_id: job_id.into(),
            },
            key,
            account,
        ))
        .await
        .expect("get job")
        .into_inner()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

on_both_databases!(an_outside_worker_takes_a_task_and_its_results_become_outputs);

async fn an_outside_worker_takes_a_task_and_its_results_become_outputs(backend: Backend) {
    // One attempt at a time: while the first job holds the only slot, the second stays queued for
    // the outside worker to take.
    let app = spawn_app_with(backend, |c| c.dispatch_concurrency = 1, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 10).await;
    let busy = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/held/busy")]))
        .await
        .expect("first job");
    app.sources
        .wait_for(Seen::Request("/held/busy".into()))
        .await;
    let outside = app
        .submit(
            &t,
            "alice",
            transform_job(&[app.sources.url("/held/outside")]),
        )
        .await
        .expect("second job");
    let task_id = outside.tasks[0].id.clone();

    let taken = report(
        &app,
        &t.key,
        "alice",
        reported(&task_id, pb::ReportedState::Processing, &[]),
    )
    .await
    .expect("taken");
    assert_eq!(taken.state, pb::TaskState::Running as i32);
    assert_eq!(taken.attempts, 1);
    // Saying it again changes nothing.
    let again = report(
        &app,
        &t.key,
        "alice",
        reported(&task_id, pb::ReportedState::Processing, &[]),
    )
    .await
    .expect("taken again");
    assert_eq!(
        (again.state, again.attempts),
        (pb::TaskState::Running as i32, 1)
    );

    // The slot frees, and a later job runs through it: had the taken task been claimable, the
    // dispatcher would have claimed it (queued earlier) before this one.
    app.sources.release_held();
    app.finish(&t, "alice", &busy.id).await;
    // Another image than the first job's, so it is not served from the content cache (refunded).
    let later = app
        .submit(
            &t,
            "alice",
            transform_job(&[app.sources.url("/small-ok.png")]),
        )
        .await
        .expect("third job");
    let later = app.finish(&t, "alice", &later.id).await;
    assert_eq!(later.state, pb::JobState::Succeeded as i32);
    let still = job(&app, &t.key, "alice", &outside.id).await;
    assert_eq!(still.tasks[0].state, pb::TaskState::Running as i32);
    assert_eq!(still.tasks[0].attempts, 1, "no processor attempt");
    assert_eq!(
        app.sources.held_requests(),
        1,
        "the taken task's source was never fetched by a processor"
    );

    let urls = vec![
        app.sources.url("/image.jpg"),
        app.sources.url("/small-ok.png"),
    ];
    let done = report(
        &app,
        &t.key,
        "alice",
        reported(&task_id, pb::ReportedState::Succeeded, &urls),
    )
    .await
    .expect("succeeded");
    assert_eq!(done.state, pb::TaskState::Succeeded as i32);
    assert_eq!(done.attempts, 1);
    assert_eq!(done.outputs.len(), 2);
    let expected = [
        (images::jpeg(), "result-1.jpg", "image/jpeg", 640, 480),
        (images::png(64, 48), "result-2.png", "image/png", 64, 48),
    ];
    for (output, (bytes, name, content_type, width, height)) in done.outputs.iter().zip(&expected) {
        assert_eq!(output.name, *name);
        assert_eq!(output.content_type, *content_type);
        assert_eq!((output.width, output.height), (*width, *height));
        assert_eq!(output.bytes, bytes.len() as u64);
        assert_eq!(output.sha256, sha256_hex(bytes));
        assert!(!output.from_cache);
        assert!(
            !urls.contains(&output.url),
            "an Atelier link, not the worker's"
        );
        let stored = app
            .storage
            .get(&output.key, 20 << 20)
            .await
            .expect("stored");
        assert_eq!(sha256_hex(&stored), output.sha256);
        let thumbnail = output.thumbnail.as_ref().expect("thumbnail");
        assert_eq!(
            thumbnail.width.max(thumbnail.height),
            (*width).max(*height).min(256),
            "longest side 256, never enlarged"
        );
        let thumb = app
            .storage
            .get(&thumbnail.key, 20 << 20)
            .await
            .expect("thumbnail stored");
        assert_eq!(thumb.len() as u64, thumbnail.bytes);
        let decoded = images::decode(&thumb);
        assert_eq!(
            (decoded.width(), decoded.height()),
            (thumbnail.width, thumbnail.height)
        );
    }

    // Watchers see it as they see a processor's result.
    let events = app.watch_to_end(&t, "alice", &outside.id, 0).await;
    let outputs = events
        .iter()
        .filter(|e| matches!(e.event, Some(pb::job_event::Event::Output(_))))
        .count();
    assert_eq!(outputs, 2);
    let task_states: Vec<i32> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::job_event::Event::TaskState(s)) => Some(s.state),
            _ => None,
        })
        .collect();
    assert_eq!(
        task_states,
        vec![
            pb::TaskState::Running as i32,
            pb::TaskState::Succeeded as i32
        ]
    );
    let finished = job(&app, &t.key, "alice", &outside.id).await;
    assert_eq!(finished.state, pb::JobState::Succeeded as i32);
    assert_eq!(finished.tasks[0].outputs.len(), 2);

    // A retried report of the same end answers the task unchanged; any other end is refused.
    let same = report(
        &app,
        &t.key,
        "alice",
        reported(&task_id, pb::ReportedState::Succeeded, &urls[..1]),
    )
    .await
    .expect("same state");
    let keys =
        |task: &pb::Task| -> Vec<String> { task.outputs.iter().map(|o| o.key.clone()).collect() };
    assert_eq!(keys(&same), keys(&done));
    for state in [
        pb::ReportedState::Failed,
        pb::ReportedState::Processing,
        pb::ReportedState::Queued,
    ] {
        let refused = report(&app, &t.key, "alice", reported(&task_id, state, &[]))
            .await
            .expect_err("a finished task does not change");
        assert_eq!(code_of(&refused), 1003, "{state:?}: {refused:?}");
    }
    let account = app.account(&t, "alice").await;
    assert_eq!(account.balance, 7, "three jobs charged, none refunded");
    assert_eq!(account.balance, app.ledger_sum(&t, "alice").await);
}

on_both_databases!(a_failed_report_fails_the_task_and_refunds_it_once);

async fn a_failed_report_fails_the_task_and_refunds_it_once(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.dispatch_concurrency = 0, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let submitted = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("job");
    assert_eq!(app.account(&t, "alice").await.balance, 4);
    let task_id = submitted.tasks[0].id.clone();
    let mut failed = reported(&task_id, pb::ReportedState::Failed, &[]);
    failed.error_message = "RunningHub: 内容审核未通过".into();
    for _ in 0..2 {
        let task = report(&app, &t.key, "alice", failed.clone())
            .await
            .expect("failed");
        assert_eq!(task.state, pb::TaskState::Failed as i32);
        let failure = task.failure.expect("failure");
        assert_eq!(failure.code, 3001);
        assert_eq!(failure.message, "RunningHub: 内容审核未通过");
        let account = app.account(&t, "alice").await;
        assert_eq!(account.balance, 5, "refunded exactly once");
        assert_eq!(account.balance, app.ledger_sum(&t, "alice").await);
    }
    let finished = app.finish(&t, "alice", &submitted.id).await;
    assert_eq!(finished.state, pb::JobState::Failed as i32);
    let refused = report(
        &app,
        &t.key,
        "alice",
        reported(
            &task_id,
            pb::ReportedState::Succeeded,
            &[app.sources.url("/image.jpg")],
        ),
    )
    .await
    .expect_err("a failed task stays failed");
    assert_eq!(code_of(&refused), 1003);
    assert_eq!(app.account(&t, "alice").await.balance, 5);
}

on_both_databases!(only_callers_with_the_service_token_report_and_only_their_own_tasks);

async fn only_callers_with_the_service_token_report_and_only_their_own_tasks(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.dispatch_concurrency = 0, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    app.member(&t, "bob", 5).await;
    let other = app.tenant("other").await;
    app.member(&other, "alice", 5).await;
    let submitted = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("job");
    let task_id = submitted.tasks[0].id.clone();
    let take = reported(&task_id, pb::ReportedState::Processing, &[]);
    for service in [None, Some("not-the-service-token"), Some("")] {
        let denied = app
            .jobs
            .clone()
            .report_task(report_as(&t.key, "alice", service, take.clone()))
            .await
            .expect_err("needs the service token");
        assert_eq!(denied.code(), tonic::Code::PermissionDenied);
        assert_eq!(code_of(&denied), 1002, "{service:?}");
    }
    // The service token alone is not a tenant.
    let mut no_key = Request::new(take.clone());
    no_key
        .metadata_mut()
        .insert("x-api-key", SERVICE.parse().expect("ascii"));
    let anonymous = app
        .jobs
        .clone()
        .report_task(no_key)
        .await
        .expect_err("needs a key");
    assert_eq!(code_of(&anonymous), 1001);
    // Other accounts and tenants do not see the task at all.
    for (key, account) in [(&t.key, "bob"), (&other.key, "alice")] {
        let hidden = report(&app, key, account, take.clone())
            .await
            .expect_err("not theirs");
        assert_eq!(code_of(&hidden), 1004);
    }
    let unknown = report(
        &app,
        &t.key,
        "alice",
        reported("no-such-task", pb::ReportedState::Processing, &[]),
    )
    .await
    .expect_err("no such task");
    assert_eq!(code_of(&unknown), 1004);
    let still = job(&app, &t.key, "alice", &submitted.id).await;
    assert_eq!(
        (still.tasks[0].state, still.tasks[0].attempts),
        (pb::TaskState::Queued as i32, 0)
    );
    // Waiting is what it is doing: answered unchanged.
    let waiting = report(
        &app,
        &t.key,
        "alice",
        reported(&task_id, pb::ReportedState::Queued, &[]),
    )
    .await
    .expect("still queued");
    assert_eq!(waiting.state, pb::TaskState::Queued as i32);
}

on_both_databases!(a_result_that_cannot_be_fetched_leaves_the_task_as_it_was);

async fn a_result_that_cannot_be_fetched_leaves_the_task_as_it_was(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.dispatch_concurrency = 0, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let submitted = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("job");
    let task_id = submitted.tasks[0].id.clone();
    report(
        &app,
        &t.key,
        "alice",
        reported(&task_id, pb::ReportedState::Processing, &[]),
    )
    .await
    .expect("taken");
    let cases = [
        ("/missing.png", 3002),
        ("/not-an-image", 3003),
        ("/truncated.jpg", 3017),
        ("/too-large", 3008),
    ];
    for (path, code) in cases {
        let urls = vec![app.sources.url("/image.jpg"), app.sources.url(path)];
        let refused = report(
            &app,
            &t.key,
            "alice",
            reported(&task_id, pb::ReportedState::Succeeded, &urls),
        )
        .await
        .expect_err("a bad result");
        assert_eq!(code_of(&refused), code, "{path}: {refused:?}");
        assert!(
            refused.message().contains("result URL 2"),
            "names the URL: {}",
            refused.message()
        );
        let still = job(&app, &t.key, "alice", &submitted.id).await;
        let task = &still.tasks[0];
        assert_eq!(
            (task.state, task.attempts, task.outputs.len()),
            (pb::TaskState::Running as i32, 1, 0),
            "{path}"
        );
    }
    // Addresses the downloader refuses are refused here too.
    let blocked = report(
        &app,
        &t.key,
        "alice",
        reported(
            &task_id,
            pb::ReportedState::Succeeded,
            &["http://10.0.0.1/result.png".to_string()],
        ),
    )
    .await
    .expect_err("a private address");
    assert_eq!(code_of(&blocked), 3005);
    // The worker reports again, with good results this time.
    let done = report(
        &app,
        &t.key,
        "alice",
        reported(
            &task_id,
            pb::ReportedState::Succeeded,
            &[app.sources.url("/small-ok.png")],
        ),
    )
    .await
    .expect("succeeded");
    assert_eq!(done.state, pb::TaskState::Succeeded as i32);
    assert_eq!(done.outputs.len(), 1);
    assert_eq!(done.outputs[0].sha256, sha256_hex(&images::png(64, 48)));
}

on_both_databases!(a_task_atelier_runs_cannot_be_reported);

async fn a_task_atelier_runs_cannot_be_reported(backend: Backend) {
    let app = spawn_app_with(backend, |_| {}, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let submitted = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/held/ours")]))
        .await
        .expect("job");
    app.sources
        .wait_for(Seen::Request("/held/ours".into()))
        .await;
    let task_id = submitted.tasks[0].id.clone();
    for state in [pb::ReportedState::Processing, pb::ReportedState::Failed] {
        let refused = report(&app, &t.key, "alice", reported(&task_id, state, &[]))
            .await
            .expect_err("Atelier runs it");
        assert_eq!(code_of(&refused), 1003);
        assert!(
            refused.message().contains("being processed by Atelier"),
            "{refused:?}"
        );
    }
    app.sources.release_held();
    let finished = app.finish(&t, "alice", &submitted.id).await;
    assert_eq!(finished.state, pb::JobState::Succeeded as i32);
    assert_eq!(app.account(&t, "alice").await.balance, 4);
}

on_both_databases!(a_worker_that_never_reports_times_out_and_is_refunded);

async fn a_worker_that_never_reports_times_out_and_is_refunded(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            c.dispatch_concurrency = 0;
            c.attempt_timeout_seconds = 1.0;
            c.lease_seconds = 1.0;
        },
        |_| {},
    )
    .await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let submitted = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("job");
    report(
        &app,
        &t.key,
        "alice",
        reported(&submitted.tasks[0].id, pb::ReportedState::Processing, &[]),
    )
    .await
    .expect("taken");
    let finished = app.finish(&t, "alice", &submitted.id).await;
    assert_eq!(finished.state, pb::JobState::Failed as i32);
    let failure = finished.tasks[0].failure.clone().expect("failure");
    assert_eq!(failure.code, 1007, "{failure:?}");
    let account = app.account(&t, "alice").await;
    assert_eq!(account.balance, 5, "refunded");
    assert_eq!(account.balance, app.ledger_sum(&t, "alice").await);
}
