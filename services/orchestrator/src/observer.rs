//! Every few seconds: the state gauges from the database, and a live `QueuePosition` event for each
//! queued job whose place in the queue changed since the last one (the first 200 waiting jobs). Queue
//! positions are never stored: they go to the watchers of every replica through one transaction of
//! notifications (PostgreSQL) or this replica's bus (SQLite), and `GetJob` computes them on read.

use std::collections::HashMap;
use std::time::Duration;

use atelier_proto::v1 as pb;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter,
    TransactionTrait,
};
use tokio_util::sync::CancellationToken;

use crate::db::{self, entities::job, statement};
use crate::domain::{now_ms, timestamp, JobState, Kind, TaskState};
use crate::events::EventBus;
use crate::metrics::Metrics;

/// Queued jobs looked at per round.
const QUEUE_WINDOW: i64 = 200;
/// Lock id taken so that one replica at a time announces queue positions (PostgreSQL).
const QUEUE_LOCK: i64 = 0x0a7e_11e7;

/// Runs until `shutdown`.
pub async fn run(
    db: DatabaseConnection,
    bus: EventBus,
    metrics: Metrics,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut announced: HashMap<String, u32> = HashMap::new();
    loop {
        if let Err(e) = count(&db, &metrics).await {
            tracing::warn!(error = %e, "counting jobs for metrics failed");
        }
        match announce_positions(&db, &mut announced).await {
            Ok(unannounced) => {
                for event in unannounced {
                    bus.publish(&event.job_id.clone(), event);
                }
            }
            Err(e) => tracing::warn!(error = %e, "announcing queue positions failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// Sets the state gauges: queued, running and retry-wait jobs and tasks as they are now (through the
/// partial indexes of unfinished rows), and the terminal states reached in the last minute.
async fn count(db: &DatabaseConnection, metrics: &Metrics) -> Result<(), DbErr> {
    // Terminal states count the jobs and tasks that reached them within this window (ms), read by
    // finish time, so that a round costs as much as the recent work and not the whole history.
    const RECENT_MS: i64 = 60_000;
    let by_state = |sql: String, values: Vec<sea_orm::Value>| async move {
        let rows = db
            .query_all(statement(db.get_database_backend(), &sql, values))
            .await?;
        let mut counts = HashMap::new();
        for row in rows {
            let state: String = row.try_get_by_index(0)?;
            let n: i64 = row.try_get_by_index(1)?;
            counts.insert(state, n);
        }
        Ok::<_, DbErr>(counts)
    };
    let since = crate::domain::now_ms() - RECENT_MS;
    // The unfinished states are written into the statements, as the partial indexes on them are,
    // so the counts read those indexes and never the finished history.
    let mut jobs = by_state(
        format!(
            "SELECT state, COUNT(*) FROM jobs WHERE state IN ({}) GROUP BY state",
            db::state_words(&JobState::ACTIVE)
        ),
        Vec::new(),
    )
    .await?;
    jobs.extend(
        by_state(
            "SELECT state, COUNT(*) FROM jobs WHERE finished_at >= ? GROUP BY state".into(),
            vec![since.into()],
        )
        .await?,
    );
    let mut tasks = by_state(
        format!(
            "SELECT state, COUNT(*) FROM tasks WHERE state IN ({}) GROUP BY state",
            db::state_words(&TaskState::ACTIVE)
        ),
        Vec::new(),
    )
    .await?;
    tasks.extend(
        by_state(
            "SELECT state, COUNT(*) FROM tasks WHERE finished_at >= ? GROUP BY state".into(),
            vec![since.into()],
        )
        .await?,
    );
    let all = |counts: &HashMap<String, i64>, states: &[&str]| -> Vec<(String, i64)> {
        states
            .iter()
            .map(|s| ((*s).to_string(), counts.get(*s).copied().unwrap_or(0)))
            .collect()
    };
    let job_states: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
    let task_states: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
    let count = |state: TaskState| tasks.get(state.as_str()).copied().unwrap_or(0);
    let depth = count(TaskState::Queued) + count(TaskState::RetryWait);
    metrics.set_counts(&all(&jobs, &job_states), &all(&tasks, &task_states), depth);
    Ok(())
}

/// Announces a live queue event for every waiting job whose position changed, all in one
/// transaction; returns the events that could not be announced (SQLite), for this replica's bus.
async fn announce_positions(
    db: &DatabaseConnection,
    announced: &mut HashMap<String, u32>,
) -> Result<Vec<pb::JobEvent>, DbErr> {
    let txn = db.begin().await?;
    let backend = txn.get_database_backend();
    if backend == sea_orm::DatabaseBackend::Postgres {
        let locked = txn
            .query_one(statement(
                backend,
                "SELECT pg_try_advisory_xact_lock(?)",
                vec![QUEUE_LOCK.into()],
            ))
            .await?
            .map(|r| r.try_get_by_index::<bool>(0))
            .transpose()?
            .unwrap_or(false);
        if !locked {
            txn.commit().await?;
            return Ok(Vec::new());
        }
    }
    let rows = txn
        .query_all(statement(
            backend,
            &format!(
                "SELECT j.id, j.state, COUNT(*) FROM tasks t JOIN jobs j ON j.id = t.job_id \
                 WHERE t.state IN ({}) GROUP BY j.id, j.state, j.created_at \
                 ORDER BY j.created_at, j.id LIMIT ?",
                db::state_words(&TaskState::WAITING)
            ),
            vec![QUEUE_WINDOW.into()],
        ))
        .await?;
    let mut ahead: u32 = 0;
    let mut waiting = Vec::new();
    for row in rows {
        let id: String = row.try_get_by_index(0)?;
        let state: String = row.try_get_by_index(1)?;
        let runnable: i64 = row.try_get_by_index(2)?;
        if state == JobState::Queued.as_str() {
            waiting.push((id, ahead));
        }
        ahead = ahead.saturating_add(u32::try_from(runnable).unwrap_or(u32::MAX));
    }
    let changed: Vec<(String, u32)> = waiting
        .iter()
        .filter(|(id, position)| announced.get(id) != Some(position))
        .cloned()
        .collect();
    let still_waiting: std::collections::HashSet<&String> =
        waiting.iter().map(|(id, _)| id).collect();
    announced.retain(|id, _| still_waiting.contains(id));
    if changed.is_empty() {
        txn.commit().await?;
        return Ok(Vec::new());
    }
    let jobs = job::Entity::find()
        .filter(job::Column::Id.is_in(changed.iter().map(|(id, _)| id.clone())))
        .all(&txn)
        .await?;
    let mut means: HashMap<Kind, f64> = HashMap::new();
    let mut unannounced = Vec::new();
    let now = now_ms();
    for (id, position) in changed {
        let Some(job) = jobs.iter().find(|j| j.id == id) else {
            continue;
        };
        let mean = match means.get(&job.kind) {
            Some(m) => *m,
            None => {
                let m = db::jobs::mean_task_ms(&txn, job.kind).await?;
                means.insert(job.kind, m);
                m
            }
        };
        let event = pb::JobEvent {
            job_id: id.clone(),
            time: Some(timestamp(now)),
            event: Some(pb::job_event::Event::Queue(pb::QueuePosition {
                position,
                estimated_seconds: db::jobs::estimate_seconds(mean, position),
            })),
            ..Default::default()
        };
        if !db::events::announce_live(&txn, &event).await? {
            unannounced.push(event);
        }
        announced.insert(id, position);
    }
    txn.commit().await?;
    Ok(unannounced)
}
