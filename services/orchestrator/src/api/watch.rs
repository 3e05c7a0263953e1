//! WatchJob: replay the stored log after a sequence, then follow it live until the job is terminal.
//! Both watches are background tasks of the replica: when it shuts down they end with UNAVAILABLE, so
//! an open watch never holds shutdown open.

use std::pin::Pin;
use std::time::Duration;

use atelier_proto::v1 as pb;
use atelier_telemetry::service::Tasks;
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::context::Context;
use crate::db;
use crate::domain::JobState;
use crate::error::ApiError;

/// The stream of a watch: events, then an end (or an error status).
pub type JobEventStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;

/// Events read from the database per round.
const BATCH: u64 = 256;
/// A watcher looks at the log at least this often even without a wake-up, as a safety net.
const RECHECK: Duration = Duration::from_secs(10);

/// Streams the job's events after `after` and ends once the terminal event has been sent.
pub fn job_events(ctx: Context, job_id: String, mut after: i64) -> JobEventStream {
    let (tx, rx) = mpsc::channel(64);
    // Subscribe before the first read so no event falls between the replay and the live part.
    let mut wake = ctx.bus.subscribe();
    follow(&ctx.tasks.clone(), tx.clone(), async move {
        loop {
            let batch = match db::events::after(&ctx.db, &job_id, after, BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(Status::from(ApiError::from(e)))).await;
                    return;
                }
            };
            let full = batch.len() as u64 == BATCH;
            for mut event in batch {
                crate::links::event(&ctx.links, &mut event).await;
                after = i64::try_from(event.sequence).unwrap_or(i64::MAX);
                let terminal = is_terminal(&event);
                if tx.send(Ok(event)).await.is_err() || terminal {
                    return;
                }
            }
            if full {
                continue;
            }
            // Caught up: a job that is already over has nothing more to say (a watcher that resumed
            // after the terminal event ends here).
            match db::jobs::state_and_sequence(&ctx.db, &job_id).await {
                Ok(Some((state, last))) if state.is_terminal() && after >= last => return,
                // Deleted meanwhile: nothing more will come.
                Ok(None) => return,
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(Status::from(ApiError::from(e)))).await;
                    return;
                }
            }
            loop {
                tokio::select! {
                    _ = tx.closed() => return,
                    woke = wake.recv() => match woke {
                        Ok(id) if *id != *job_id => continue,
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tokio::time::sleep(RECHECK) => break,
                }
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

/// Runs a watch on the replica's background tasks until it ends by itself or the replica stops; then
/// the caller is told UNAVAILABLE (watch again, from the last event seen, on another replica).
fn follow(
    tasks: &Tasks,
    closing: mpsc::Sender<Result<pb::JobEvent, Status>>,
    watch: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let stopping = tasks.token().clone();
    tasks.spawn(async move {
        tokio::select! {
            () = stopping.cancelled() => {
                // A full buffer means a caller that does not read: it sees the stream end instead.
                let _ = closing.try_send(Err(Status::unavailable(
                    "the orchestrator is shutting down; watch again from the last event received",
                )));
            }
            () = watch => {}
        }
    });
}

fn is_terminal(event: &pb::JobEvent) -> bool {
    match &event.event {
        Some(pb::job_event::Event::JobState(s)) => pb::JobState::try_from(s.state)
            .ok()
            .and_then(JobState::from_proto)
            .is_some_and(JobState::is_terminal),
        _ => false,
    }
}

/// How often the account-wide stream looks again without a wake-up. On PostgreSQL an event can be
/// committed (and announced) while an older transaction still runs; it is released once that one
/// ends, which no notification announces.
const EVENTS_RECHECK: Duration = Duration::from_secs(1);

/// Streams every event of the scope's jobs after `cursor`, never ending until the caller leaves.
pub fn all_events(
    ctx: Context,
    scope: db::jobs::Scope,
    mut cursor: db::events::Cursor,
) -> JobEventStream {
    let (tx, rx) = mpsc::channel(64);
    let mut wake = ctx.bus.subscribe();
    follow(&ctx.tasks.clone(), tx.clone(), async move {
        loop {
            let batch = match db::events::since(&ctx.db, &scope, cursor, BATCH).await {
                Ok(b) => b,
                Err(e) => {
                    let _ = tx.send(Err(Status::from(ApiError::from(e)))).await;
                    return;
                }
            };
            let full = batch.len() as u64 == BATCH;
            for mut event in batch {
                crate::links::event(&ctx.links, &mut event).await;
                if let Some(c) = db::events::Cursor::parse(&event.cursor).flatten() {
                    cursor = c;
                }
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                _ = tx.closed() => return,
                woke = wake.recv() => {
                    if matches!(woke, Err(broadcast::error::RecvError::Closed)) {
                        return;
                    }
                    // Many jobs may have moved at once: one read serves them all.
                    while wake.try_recv().is_ok() {}
                }
                _ = tokio::time::sleep(EVENTS_RECHECK) => {}
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}
