//! A processor at capacity answers RESOURCE_EXHAUSTED before accepting.

use atelier_codes::ErrorCode;
use atelier_proto::v1::process_event::Event;

use atelier_testkit::source::CANCEL_LIMIT;

use crate::helpers::{collect, spawn_app_with, Seen};

#[tokio::test]
async fn a_full_processor_refuses_at_once() {
    let app = spawn_app_with(|c| c.max_concurrency = 1).await;
    let mut client = app.client.clone();

    let mut first = client
        .process(app.transform_url("/stall"))
        .await
        .expect("first accepted")
        .into_inner();
    let accepted = first.message().await.expect("stream").and_then(|e| e.event);
    assert!(matches!(accepted, Some(Event::Accepted(_))), "{accepted:?}");

    let status = client
        .process(app.transform_url("/image.jpg"))
        .await
        .expect_err("at capacity");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted);
    assert_eq!(atelier_codes::decode(&status).code, ErrorCode::Unavailable);

    // Dropping the first stream frees the permit once the worker notices.
    app.sources.wait_for(Seen::Request("/stall".into())).await;
    drop(first);
    app.sources
        .wait_for_within(Seen::Closed("/stall".into()), CANCEL_LIMIT)
        .await;
    // The permit came back: the next task is accepted and runs to the end. The worker lets go of
    // the permit just after it hangs up on the source, so a refusal in that instant is retried.
    let deadline = tokio::time::Instant::now() + CANCEL_LIMIT;
    let next = loop {
        match client.process(app.transform_url("/image.jpg")).await {
            Ok(stream) => break stream.into_inner(),
            Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the permit of the dropped task was never released"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(status) => panic!("refused: {status:?}"),
        }
    };
    let (events, error) = collect(next).await;
    assert!(error.is_none(), "{error:?}");
    assert!(
        events.iter().any(|e| matches!(e, Event::Completed(_))),
        "{events:?}"
    );
}
