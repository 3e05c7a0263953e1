//! Dropping the stream cancels the task: the download is abandoned and nothing is stored.

use atelier_proto::v1::process_event::Event;

use atelier_testkit::source::CANCEL_LIMIT;

use crate::helpers::{spawn_app, Seen};

#[tokio::test]
async fn dropping_the_stream_stops_the_task_and_stores_nothing() {
    let app = spawn_app().await;
    let mut client = app.client.clone();
    let mut stream = client
        .process(app.transform_url("/stall"))
        .await
        .expect("accepted")
        .into_inner();
    let accepted = stream
        .message()
        .await
        .expect("stream")
        .and_then(|e| e.event);
    assert!(matches!(accepted, Some(Event::Accepted(_))), "{accepted:?}");
    app.sources.wait_for(Seen::Request("/stall".into())).await;

    drop(stream);
    // The processor hangs up on the source only because the task was cancelled (the download timeout is 30 s).
    app.sources
        .wait_for_within(Seen::Closed("/stall".into()), CANCEL_LIMIT)
        .await;
    assert!(app.local_files_under("jobs/job-1/task-1").is_empty());
}
