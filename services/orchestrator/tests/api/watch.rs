//! WatchJob: a client that reconnects after any sequence loses nothing and sees nothing twice.

use atelier_proto::v1 as pb;

use crate::helpers::{as_account, spawn_app, transform_job, Backend};
use crate::on_both_databases;

on_both_databases!(reconnecting_watchers_replay_exactly_what_they_missed);

async fn reconnecting_watchers_replay_exactly_what_they_missed(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "gus", 5).await;
    let urls = vec![app.sources.url("/image.jpg"), app.sources.url("/image.jpg")];
    let job = app
        .submit(&t, "gus", transform_job(&urls))
        .await
        .expect("submit");

    // Read two events live, then hang up.
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
        .expect("watch")
        .into_inner();
    let mut first = Vec::new();
    while first.len() < 2 {
        let event = stream.message().await.expect("stream").expect("event");
        // A live event (a queue position) carries the last stored sequence sent and no cursor.
        if event.cursor.is_empty() {
            assert_eq!(
                event.sequence,
                first.last().map_or(0, |e: &pb::JobEvent| e.sequence)
            );
            continue;
        }
        first.push(event);
    }
    drop(stream);
    let resume_at = first.last().expect("two events").sequence;
    let mut rest = app.watch_to_end(&t, "gus", &job.id, resume_at).await;
    rest.retain(|e| !e.cursor.is_empty());
    let sequences: Vec<u64> = first.iter().chain(&rest).map(|e| e.sequence).collect();
    let expected: Vec<u64> = (1..=sequences.len() as u64).collect();
    assert_eq!(sequences, expected, "no gaps, no duplicates");
    match rest.last().and_then(|e| e.event.as_ref()) {
        Some(pb::job_event::Event::JobState(s)) => assert_eq!(s.state(), pb::JobState::Succeeded),
        other => panic!("the stream ends with the terminal state, got {other:?}"),
    }
    // A late watcher replays the whole stored log and stops at the end.
    let replay = app.watch_to_end(&t, "gus", &job.id, 0).await;
    assert_eq!(
        replay.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        expected
    );
    assert!(replay
        .iter()
        .all(|e| e.job_id == job.id && e.time.is_some()));
    let outputs = replay
        .iter()
        .filter(|e| matches!(e.event, Some(pb::job_event::Event::Output(_))))
        .count();
    assert_eq!(outputs, 2, "one output event per task, recorded once");
    // Watching from the last sequence of a finished job ends at once with nothing.
    let last = *expected.last().expect("events");
    assert!(app.watch_to_end(&t, "gus", &job.id, last).await.is_empty());
    let done = app
        .jobs
        .clone()
        .get_job(as_account(
            pb::GetJobRequest { job_id: job.id },
            &t.key,
            "gus",
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(done.last_sequence, last);
}
