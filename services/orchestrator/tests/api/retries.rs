//! Retries with backoff for transient failures, none for the rest, and hand-backs that spend nothing.

use atelier_proto::v1 as pb;

use crate::helpers::{as_account, spawn_app, spawn_app_with, transform_job, Backend};
use crate::on_both_databases;

on_both_databases!(
    transient_failures_are_retried_until_they_succeed,
    a_source_that_keeps_failing_fails_after_three_attempts_and_is_refunded,
    a_processor_at_capacity_gets_the_task_back_without_spending_an_attempt,
);

fn task_states(events: &[pb::JobEvent]) -> Vec<pb::TaskState> {
    events
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::job_event::Event::TaskState(s)) => Some(s.state()),
            _ => None,
        })
        .collect()
}

async fn transient_failures_are_retried_until_they_succeed(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let job = app
        .submit(
            &t,
            "alice",
            transform_job(&[app.sources.url("/flaky/2/a.jpg")]),
        )
        .await
        .expect("submit");
    let events = app.watch_to_end(&t, "alice", &job.id, 0).await;
    use pb::TaskState::*;
    assert_eq!(
        task_states(&events),
        [Running, RetryWait, Running, RetryWait, Running, Succeeded]
    );
    let waits: Vec<&pb::TaskStateChanged> = events
        .iter()
        .filter_map(|e| match &e.event {
            Some(pb::job_event::Event::TaskState(s)) if s.state() == RetryWait => Some(s),
            _ => None,
        })
        .collect();
    for wait in &waits {
        assert_eq!(wait.failure.as_ref().map(|f| f.code), Some(3002));
        assert!(wait.retry_at.is_some(), "the retry time is visible");
    }
    let done = app.finish(&t, "alice", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded);
    assert_eq!(done.tasks[0].attempts, 3);
    assert_eq!(
        (done.refunded, app.account(&t, "alice").await.balance),
        (0, 4)
    );
}

async fn a_source_that_keeps_failing_fails_after_three_attempts_and_is_refunded(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "bob", 5).await;
    let job = app
        .submit(
            &t,
            "bob",
            transform_job(&[app.sources.url("/flaky/99/b.jpg")]),
        )
        .await
        .expect("submit");
    let done = app.finish(&t, "bob", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Failed);
    let task = &done.tasks[0];
    assert_eq!(
        (task.attempts, task.failure.as_ref().map(|f| f.code)),
        (3, Some(3002))
    );
    assert_eq!(done.refunded, 1);
    assert_eq!(app.account(&t, "bob").await.balance, 5);
    assert_eq!(app.ledger_sum(&t, "bob").await, 5, "refunded once");
}

async fn a_processor_at_capacity_gets_the_task_back_without_spending_an_attempt(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| c.dispatch_concurrency = 4,
        |p| p.max_concurrency = 1,
    )
    .await;
    let t = app.tenant("shop").await;
    app.member(&t, "carl", 5).await;
    let blocker = app
        .submit(&t, "carl", transform_job(&[app.sources.url("/stall")]))
        .await
        .expect("blocker");
    app.sources
        .wait_for(atelier_testkit::Seen::Request("/stall".into()))
        .await;
    // The only processor slot is taken: the next task is refused and handed back.
    let job = app
        .submit(&t, "carl", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("submit");
    let mut stream = app
        .jobs
        .clone()
        .watch_job(as_account(
            pb::WatchJobRequest {
                job_id: job.id.clone(),
                after_sequence: 0,
            },
            &t.key,
            "carl",
        ))
        .await
        .expect("watch")
        .into_inner();
    loop {
        let event = stream.message().await.expect("stream").expect("event");
        if let Some(pb::job_event::Event::TaskState(s)) = &event.event {
            if s.state() == pb::TaskState::Queued {
                assert_eq!(s.attempts, 0, "the refused attempt is not counted");
                break;
            }
        }
    }
    app.jobs
        .clone()
        .cancel_job(as_account(
            pb::CancelJobRequest { job_id: blocker.id },
            &t.key,
            "carl",
        ))
        .await
        .expect("cancel");
    let done = app.finish(&t, "carl", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded);
    assert_eq!(done.tasks[0].attempts, 1);
}
