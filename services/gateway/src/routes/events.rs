//! `GET /v1/jobs/{id}/events`: Server-Sent Events over `WatchJob`. Each event's `id:` is the job event's
//! sequence, so a browser's `EventSource` (or any client sending `Last-Event-ID`) resumes exactly after
//! the last event it saw. Comments keep idle connections open; the stream ends after the terminal event.

use std::convert::Infallible;

use atelier_proto::v1 as pb;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::call::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{PathParam, QueryParams};
use crate::model::event::JobEvent;
use crate::state::AppState;

/// Query of the event stream.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Start after this sequence (for clients that cannot send `Last-Event-ID`); the header wins.
    pub after_sequence: Option<u64>,
}

/// Follow a job live: stored events after the cursor, then new ones until the job is terminal.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}/events",
    operation_id = "watchJobEvents",
    tag = "jobs",
    params(
        ("id" = String, Path, description = "The job id"),
        EventsQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this sequence"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "A text/event-stream; each `data:` is a JobEvent, `event:` its type and `id:` its sequence",
         content_type = "text/event-stream", body = JobEvent),
        (status = "default", description = "An error", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    QueryParams(query): QueryParams<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let after = match headers.get("last-event-id") {
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| ApiError::field("Last-Event-ID", "must be an event sequence number"))?,
        None => query.after_sequence.unwrap_or(0),
    };
    let request = caller.request(pb::WatchJobRequest {
        job_id: id,
        after_sequence: after,
    });
    let stream = state.jobs.clone().watch_job(request).await?.into_inner();
    let events = futures::stream::unfold(Some(stream), |stream| async move {
        let mut stream = stream?;
        let message = loop {
            match stream.message().await {
                // Live-only events (queue positions) have no sequence of their own, so they cannot
                // be an SSE id that only grows: they are left out (the job shows its position).
                Ok(Some(event)) if event.cursor.is_empty() && is_live_only(&event) => continue,
                other => break other,
            }
        };
        match message {
            Ok(Some(event)) => Some((Ok(sse_event(&JobEvent::from(&event))), Some(stream))),
            Ok(None) => None,
            // The stream broke after it started: say why in an `error` event, then end.
            Err(status) => {
                let err = ApiError::from(status);
                let event = Event::default()
                    .event("error")
                    .json_data(err.body())
                    .unwrap_or_else(|_| Event::default().event("error"));
                Some((Ok(event), None))
            }
        }
    });
    Ok(Sse::new(events).keep_alive(
        KeepAlive::new()
            .interval(state.limits.keep_alive)
            .text("keep-alive"),
    ))
}

/// Whether an event of a WatchJob stream is one the orchestrator never stores.
fn is_live_only(event: &pb::JobEvent) -> bool {
    matches!(event.event, Some(pb::job_event::Event::Queue(_)))
}

fn sse_event(event: &JobEvent) -> Event {
    let base = Event::default()
        .id(event.sequence.to_string())
        .event(event.kind.name());
    match base.json_data(event) {
        Ok(e) => e,
        // Serialising our own struct cannot fail; still never panic on it.
        Err(_) => Event::default()
            .id(event.sequence.to_string())
            .event(event.kind.name()),
    }
}
