//! Owned shutdown: a replica with watch streams that would never end by themselves (a queued job that
//! nobody runs, an account's event stream) still stops within its grace period, and every stream
//! ends with UNAVAILABLE instead of hanging.

use std::time::Duration;

use atelier_proto::v1 as pb;
use tonic::{Code, Streaming};

use crate::helpers::*;
use crate::on_both_databases;

on_both_databases!(a_replica_with_open_watch_streams_stops_within_the_grace_period);

/// The replica's grace period in this test.
const GRACE: Duration = Duration::from_secs(5);
/// What stopping may take beyond the grace period (handing back attempts, closing the database).
const MARGIN: Duration = Duration::from_secs(5);

async fn next(stream: &mut Streaming<pb::JobEvent>) -> pb::JobEvent {
    tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("an event in time")
        .expect("stream")
        .expect("the stream is open")
}

/// Reads what is left of a stream and returns how it ended.
async fn end_of(stream: &mut Streaming<pb::JobEvent>) -> Result<(), tonic::Status> {
    loop {
        match stream.message().await {
            // Queue position events may still be in flight before the end.
            Ok(Some(_)) => continue,
            Ok(None) => return Ok(()),
            Err(status) => return Err(status),
        }
    }
}

async fn a_replica_with_open_watch_streams_stops_within_the_grace_period(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            // An API-only replica: the job stays queued, so watching it never ends on its own.
            c.dispatch_concurrency = 0;
            c.shutdown_grace_seconds = GRACE.as_secs_f64();
        },
        |_| {},
    )
    .await;
    let t = app.tenant("shop").await;
    app.member(&t, "gus", 5).await;

    let mut account_streams = Vec::new();
    for _ in 0..3 {
        let stream = app
            .jobs
            .clone()
            .watch_events(as_account(pb::WatchEventsRequest::default(), &t.key, "gus"))
            .await
            .expect("watch events")
            .into_inner();
        account_streams.push(stream);
    }
    let job = app
        .submit(&t, "gus", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("submit");
    // Every account stream is live: it sees the new job.
    for stream in &mut account_streams {
        assert_eq!(next(stream).await.job_id, job.id);
    }
    let mut job_streams = Vec::new();
    for _ in 0..3 {
        let mut stream = app
            .jobs
            .clone()
            .watch_job(as_account(
                pb::WatchJobRequest {
                    job_id: job.id.clone(),
                    after_sequence: 0,
                },
                &t.key,
                "gus",
            ))
            .await
            .expect("watch job")
            .into_inner();
        // The replay has started: the stream is open and following a job that is still queued.
        assert_eq!(next(&mut stream).await.job_id, job.id);
        job_streams.push(stream);
    }

    let orchestrator = app.orchestrator;
    let stopped = tokio::time::timeout(GRACE + MARGIN, orchestrator.stop()).await;
    assert!(
        stopped.is_ok(),
        "the replica did not stop within its grace period ({GRACE:?}) and the margin ({MARGIN:?})"
    );
    stopped
        .expect("stopped in time")
        .expect("the replica stops cleanly");

    for (name, stream) in account_streams
        .iter_mut()
        .map(|s| ("WatchEvents", s))
        .chain(job_streams.iter_mut().map(|s| ("WatchJob", s)))
    {
        let ended = tokio::time::timeout(Duration::from_secs(5), end_of(stream))
            .await
            .unwrap_or_else(|_| panic!("{name} still open after the replica stopped"));
        let status = ended.expect_err("the stream ends with a status, not as if the job were over");
        assert_eq!(status.code(), Code::Unavailable, "{name}: {status:?}");
    }
}
