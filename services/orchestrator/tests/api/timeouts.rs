//! Nothing waits or runs forever: queue timeout, per-attempt deadline and the client's job deadline
//! all fail the task with 1007 and refund it.

use atelier_proto::v1 as pb;
use atelier_testkit::source::CANCEL_LIMIT;
use atelier_testkit::Seen;

use crate::helpers::{as_account, spawn_app_with, transform_job, Backend};
use crate::on_both_databases;

on_both_databases!(
    a_task_queued_too_long_times_out,
    an_attempt_past_its_deadline_fails,
    a_job_past_its_client_deadline_stops
);

fn failure_code(job: &pb::Job) -> Option<u32> {
    job.tasks[0].failure.as_ref().map(|f| f.code)
}

async fn a_task_queued_too_long_times_out(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            c.dispatch_concurrency = 1;
            c.queue_timeout_seconds = 0.3;
            c.lease_seconds = 1.0;
        },
        |_| {},
    )
    .await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let blocker = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/stall")]))
        .await
        .expect("blocker");
    app.sources.wait_for(Seen::Request("/stall".into())).await;
    let waiting = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("waiting");
    let done = app.finish(&t, "alice", &waiting.id).await;
    assert_eq!(done.state(), pb::JobState::Failed);
    assert_eq!(
        (failure_code(&done), done.tasks[0].attempts, done.refunded),
        (Some(1007), 0, 1)
    );
    app.jobs
        .clone()
        .cancel_job(as_account(
            pb::CancelJobRequest { job_id: blocker.id },
            &t.key,
            "alice",
        ))
        .await
        .expect("cancel");
    assert_eq!(app.account(&t, "alice").await.balance, 5);
    assert_eq!(app.ledger_sum(&t, "alice").await, 5);
}

async fn an_attempt_past_its_deadline_fails(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.attempt_timeout_seconds = 0.5, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "bob", 5).await;
    let job = app
        .submit(&t, "bob", transform_job(&[app.sources.url("/stall")]))
        .await
        .expect("submit");
    let done = app.finish(&t, "bob", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Failed);
    assert_eq!(
        (failure_code(&done), done.tasks[0].attempts, done.refunded),
        (Some(1007), 1, 1)
    );
    // The processor's work was stopped, not left running.
    app.sources
        .wait_for_within(Seen::Closed("/stall".into()), CANCEL_LIMIT)
        .await;
    assert_eq!(app.account(&t, "bob").await.balance, 5);
}

async fn a_job_past_its_client_deadline_stops(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.lease_seconds = 1.0, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "cy", 5).await;
    let mut request = transform_job(&[app.sources.url("/stall")]);
    let soon = std::time::SystemTime::now() + std::time::Duration::from_millis(800);
    request.deadline = Some(prost_types::Timestamp::from(soon));
    let job = app.submit(&t, "cy", request).await.expect("submit");
    let done = app.finish(&t, "cy", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Failed);
    assert_eq!((failure_code(&done), done.refunded), (Some(1007), 1));
    app.sources
        .wait_for_within(Seen::Closed("/stall".into()), CANCEL_LIMIT)
        .await;
    assert_eq!(app.account(&t, "cy").await.balance, 5);
    assert_eq!(app.ledger_sum(&t, "cy").await, 5);

    let mut past = transform_job(&[app.sources.url("/image.jpg")]);
    past.deadline = Some(prost_types::Timestamp {
        seconds: 1,
        nanos: 0,
    });
    let err = app
        .submit(&t, "cy", past)
        .await
        .expect_err("a deadline in the past");
    assert_eq!(crate::helpers::code_of(&err), 1003);
}
