//! WatchJob: replay the stored log after a sequence, then follow it live until the job is terminal.
//! WatchEvents: every event of the caller's jobs after a cursor, for as long as the caller stays.
//!
//! A watch is a stream that tonic drives, not a task of its own: while it waits it holds only its
//! wake-up receiver, and it reads the database only when woken (the PostgreSQL listener wakes every
//! watcher after it reconnects, so a lost notification cannot strand one). When the replica shuts
//! down, an open watch ends with UNAVAILABLE, so it never holds shutdown open.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use atelier_proto::v1 as pb;
use futures::future::BoxFuture;
use futures::Stream;
use sea_orm::EntityTrait;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::context::Context;
use crate::db;
use crate::domain::JobState;
use crate::error::ApiError;
use crate::events::{AllWakes, JobWakes};

/// The stream of a watch: events, then an end (or an error status).
pub type JobEventStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;

/// Events read from the database per round.
const BATCH: u64 = 256;

/// A watch: the next event to send, or `None` once it is over.
trait Follow: Send + 'static {
    fn next(&mut self) -> impl Future<Output = Option<Result<pb::JobEvent, Status>>> + Send;
}

/// Drives a watch until it ends or the replica stops; then the caller is told UNAVAILABLE (watch
/// again, from the last event seen, on another replica).
fn stream_of(stopping: CancellationToken, follow: impl Follow) -> JobEventStream {
    Box::pin(futures::stream::unfold(
        (stopping, Some(follow)),
        |(stopping, follow)| async move {
            let mut follow = follow?;
            tokio::select! {
                biased;
                () = stopping.cancelled() => Some((
                    Err(Status::unavailable(
                        "the orchestrator is shutting down; watch again from the last event received",
                    )),
                    (stopping, None),
                )),
                item = follow.next() => item.map(|item| (item, (stopping, Some(follow)))),
            }
        },
    ))
}

/// Streams the job's events after `after` and ends once the terminal event has been sent.
pub fn job_events(ctx: Context, job_id: String, after: i64) -> JobEventStream {
    // Subscribe before the first read so no event falls between the replay and the live part.
    let wakes = ctx.bus.watch_job(&job_id);
    let stopping = ctx.tasks.token().clone();
    stream_of(
        stopping,
        JobWatch {
            ctx,
            job_id,
            after,
            wakes,
            pending: VecDeque::new(),
            read: true,
            opened: true,
            over: false,
        },
    )
}

struct JobWatch {
    ctx: Context,
    job_id: String,
    /// The last stored sequence sent (or the caller's starting point).
    after: i64,
    wakes: JobWakes,
    /// Events read or received and not sent yet.
    pending: VecDeque<pb::JobEvent>,
    /// The log may hold events after `after`.
    read: bool,
    /// Nothing was read yet.
    opened: bool,
    /// Nothing more is sent once `pending` is empty.
    over: bool,
}

impl Follow for JobWatch {
    async fn next(&mut self) -> Option<Result<pb::JobEvent, Status>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            if self.over {
                return None;
            }
            // A watch waits far longer than it sends: it keeps no buffer from its replay.
            self.pending = VecDeque::new();
            if self.read {
                if let Err(e) = self.read().await {
                    self.over = true;
                    return Some(Err(Status::from(ApiError::from(e))));
                }
                continue;
            }
            let woken = self.wakes.wait().await;
            for event in woken.live {
                self.pending
                    .push_back(self.live(pb::JobEvent::clone(&event)));
            }
            self.read = woken.stored;
        }
    }
}

impl JobWatch {
    /// A live event as this watcher sends it: it carries the last stored sequence sent, so a caller
    /// resuming after the last sequence it saw loses nothing and gets nothing twice.
    fn live(&self, mut event: pb::JobEvent) -> pb::JobEvent {
        event.job_id.clone_from(&self.job_id);
        event.sequence = u64::try_from(self.after).unwrap_or_default();
        event.cursor.clear();
        event
    }

    /// Reads the next stored events into `pending`; once caught up, notes whether the job is over.
    /// Boxed, so that a waiting watch does not carry the room of a database call.
    fn read(&mut self) -> BoxFuture<'_, Result<(), sea_orm::DbErr>> {
        Box::pin(async move {
            let batch = db::events::after(&self.ctx.db, &self.job_id, self.after, BATCH).await?;
            let full = batch.len() as u64 == BATCH;
            for mut event in batch {
                crate::links::event(&self.ctx.links, &mut event).await;
                self.after = i64::try_from(event.sequence).unwrap_or(i64::MAX);
                let terminal = is_terminal(&event);
                self.pending.push_back(event);
                if terminal {
                    self.over = true;
                    return Ok(());
                }
            }
            if full {
                return Ok(());
            }
            self.read = false;
            // Caught up: a job that is already over has nothing more to say (a watcher that resumed
            // after the terminal event ends here); one deleted meanwhile neither.
            let job = db::entities::job::Entity::find_by_id(self.job_id.clone())
                .one(&self.ctx.db)
                .await?;
            let Some(job) = job else {
                self.over = true;
                return Ok(());
            };
            if job.state.is_terminal() && self.after >= job.last_sequence {
                self.over = true;
                return Ok(());
            }
            // Queue positions are live only: a new watcher of a queued job learns where it stands
            // now, and the observer tells it when that changes.
            if std::mem::take(&mut self.opened) && job.state == JobState::Queued {
                let mean_ms = self.ctx.run_times.mean_ms(&self.ctx.db, job.kind).await?;
                let (position, estimated_seconds) =
                    db::jobs::queue_position(&self.ctx.db, &job, mean_ms).await?;
                let event = self.live(pb::JobEvent {
                    event: Some(pb::job_event::Event::Queue(pb::QueuePosition {
                        position,
                        estimated_seconds,
                    })),
                    time: Some(crate::domain::timestamp(crate::domain::now_ms())),
                    ..Default::default()
                });
                self.pending.push_back(event);
            }
            Ok(())
        })
    }
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
    cursor: db::events::Cursor,
) -> JobEventStream {
    let wakes = ctx.bus.subscribe();
    let stopping = ctx.tasks.token().clone();
    stream_of(
        stopping,
        AllWatch {
            ctx,
            scope,
            cursor,
            wakes,
            pending: VecDeque::new(),
            read: true,
        },
    )
}

struct AllWatch {
    ctx: Context,
    scope: db::jobs::Scope,
    cursor: db::events::Cursor,
    wakes: AllWakes,
    pending: VecDeque<pb::JobEvent>,
    /// The last read filled a batch: read on without waiting.
    read: bool,
}

impl Follow for AllWatch {
    async fn next(&mut self) -> Option<Result<pb::JobEvent, Status>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(Ok(event));
            }
            self.pending = VecDeque::new();
            if !self.read {
                // Many jobs may have moved at once: one read serves them all.
                tokio::select! {
                    () = self.wakes.wait() => {}
                    () = tokio::time::sleep(EVENTS_RECHECK) => {}
                }
            }
            if let Err(e) = self.read().await {
                return Some(Err(Status::from(ApiError::from(e))));
            }
        }
    }
}

impl AllWatch {
    fn read(&mut self) -> BoxFuture<'_, Result<(), sea_orm::DbErr>> {
        Box::pin(async move {
            let batch = db::events::since(&self.ctx.db, &self.scope, self.cursor, BATCH).await?;
            self.read = batch.len() as u64 == BATCH;
            for mut event in batch {
                crate::links::event(&self.ctx.links, &mut event).await;
                if let Some(c) = db::events::Cursor::parse(&event.cursor).flatten() {
                    self.cursor = c;
                }
                self.pending.push_back(event);
            }
            Ok(())
        })
    }
}
