//! `GET /v1/jobs/{id}/events`: Server-Sent Events read by a real HTTP client, resumed with
//! `Last-Event-ID`, kept alive with comments.

use std::time::Duration;

use crate::helpers::{
    assert_error, spawn_app, spawn_app_with, status_and_json, Backend, SseReader,
};
use crate::on_both_databases;

on_both_databases!(events_stream_until_the_job_ends_and_resume_after_last_event_id);

async fn events_stream_until_the_job_ends_and_resume_after_last_event_id(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let job = app
        .submit_transform(&shop, &[app.sources.url("/image.jpg")])
        .await;
    let id = job["id"].as_str().expect("id");

    let all = app.events(&shop, id, None).await;
    assert!(all.len() >= 4, "{all:?}");
    let mut previous = 0;
    for frame in &all {
        let data = frame.data.as_ref().expect("data");
        let id_field: u64 = frame
            .id
            .as_deref()
            .expect("id")
            .parse()
            .expect("numeric id");
        assert_eq!(data["sequence"], id_field, "the SSE id is the sequence");
        assert!(id_field > previous, "increasing: {all:?}");
        previous = id_field;
        assert_eq!(
            frame.event.as_deref(),
            data["type"].as_str(),
            "event name is the type"
        );
        assert_eq!(data["job_id"], id);
    }
    let last = all
        .last()
        .and_then(|f| f.data.clone())
        .expect("a last event");
    assert_eq!(last["type"], "job_state");
    assert_eq!(last["job_state"], "succeeded");
    assert!(
        all.iter().any(|f| f.event.as_deref() == Some("output")),
        "{all:?}"
    );
    assert!(
        all.iter().any(|f| f.event.as_deref() == Some("progress")),
        "{all:?}"
    );

    // Resume after the second event: exactly the events after it, nothing lost, nothing repeated.
    let cut: u64 = all[1].id.as_deref().expect("id").parse().expect("id");
    // Result links are minted as events are read, so they are compared apart from the rest.
    let resumed = app.events(&shop, id, Some(cut)).await;
    assert_eq!(without_links(&resumed), without_links(&all[2..]));

    // Resuming after the terminal event ends at once with nothing.
    let after_end = app.events(&shop, id, Some(previous)).await;
    assert!(after_end.is_empty(), "{after_end:?}");

    // The job agrees on the last sequence.
    let (_, done) = app.get_json(&shop, &format!("/v1/jobs/{id}")).await;
    assert_eq!(done["last_sequence"], previous);
}

on_both_databases!(an_idle_stream_gets_keep_alive_comments_and_ends_when_the_job_is_cancelled);

async fn an_idle_stream_gets_keep_alive_comments_and_ends_when_the_job_is_cancelled(
    backend: Backend,
) {
    let app = spawn_app_with(backend, |c| {
        c.sse_keep_alive = Duration::from_millis(100);
    })
    .await;
    let shop = app.shop().await;
    let job = app
        .submit_transform(&shop, &[app.sources.url("/stall")])
        .await;
    let id = job["id"].as_str().expect("id").to_string();
    let response = app
        .call(
            reqwest::Method::GET,
            &format!("/v1/jobs/{id}/events"),
            &shop,
            "shopper",
        )
        .send()
        .await
        .expect("events");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    // The download stalls, so nothing happens for a while: the stream still says it is alive.
    let mut reader = SseReader::new(response);
    let before = reader
        .until(|f| f.comment.as_deref() == Some("keep-alive"))
        .await;
    assert_eq!(
        before.last().and_then(|f| f.comment.as_deref()),
        Some("keep-alive"),
        "{before:?}"
    );
    let (status, cancelled) = status_and_json(
        app.call(
            reqwest::Method::POST,
            &format!("/v1/jobs/{id}/cancel"),
            &shop,
            "shopper",
        )
        .send()
        .await
        .expect("cancel"),
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    let rest = reader.until(|_| false).await;
    let last = rest
        .iter()
        .rev()
        .find_map(|f| f.data.clone())
        .expect("a terminal event");
    assert_eq!(last["job_state"], "cancelled", "{rest:?}");
}

on_both_databases!(events_of_unknown_or_foreign_jobs_are_not_found);

async fn events_of_unknown_or_foreign_jobs_are_not_found(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let other = app.tenant("other").await;
    app.member(&other, "shopper", 10).await;
    let job = app
        .submit_transform(&shop, &[app.sources.url("/image.jpg")])
        .await;
    let id = job["id"].as_str().expect("id");
    let (status, body) = status_and_json(
        app.call(
            reqwest::Method::GET,
            &format!("/v1/jobs/{id}/events"),
            &other,
            "shopper",
        )
        .send()
        .await
        .expect("events"),
    )
    .await;
    assert_error(status, &body, 404, 1004, "NOT_FOUND");
    let (status, body) = status_and_json(
        app.call(
            reqwest::Method::GET,
            &format!("/v1/jobs/{id}/events"),
            &shop,
            "shopper",
        )
        .header("last-event-id", "not-a-number")
        .send()
        .await
        .expect("events"),
    )
    .await;
    assert_error(status, &body, 400, 1003, "INVALID_ARGUMENT");
}

/// The frames with the minted result links of output events taken out.
fn without_links(frames: &[crate::helpers::Frame]) -> Vec<crate::helpers::Frame> {
    frames
        .iter()
        .cloned()
        .map(|mut frame| {
            if let Some(output) = frame
                .data
                .as_mut()
                .and_then(|d| d.get_mut("output"))
                .and_then(|o| o.as_object_mut())
            {
                let url = output.remove("url");
                assert!(
                    url.as_ref()
                        .and_then(|u| u.as_str())
                        .is_some_and(|u| u.contains("/v1/files/")),
                    "{url:?}"
                );
                if let Some(thumbnail) = output.get_mut("thumbnail").and_then(|t| t.as_object_mut())
                {
                    thumbnail.remove("url");
                }
            }
            frame
        })
        .collect()
}
