//! The job event log. Each event takes the next per-job sequence from `jobs.last_sequence` in the same
//! transaction that records the change, so sequences have no gaps and a reconnecting watcher can
//! replay exactly what it missed.

use atelier_proto::v1 as pb;
use prost::Message;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::entities::{job, job_event};
use super::statement;
use crate::domain::{now_ms, timestamp};

/// Appends an event to the job's log and returns its sequence.
pub async fn append<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    event: pb::job_event::Event,
) -> Result<i64, DbErr> {
    let now = now_ms();
    let row = db
        .query_one(statement(
            db.get_database_backend(),
            "UPDATE jobs SET last_sequence = last_sequence + 1, updated_at = ? WHERE id = ? RETURNING last_sequence",
            vec![now.into(), job.id.clone().into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound(format!("job {}", job.id)))?;
    let sequence: i64 = row.try_get_by_index(0)?;
    let payload = pb::JobEvent {
        event: Some(event),
        ..Default::default()
    }
    .encode_to_vec();
    job_event::ActiveModel {
        job_id: Set(job.id.clone()),
        tenant_id: Set(job.tenant_id.clone()),
        account_id: Set(job.account_id.clone()),
        sequence: Set(sequence),
        payload: Set(payload),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await?;
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        // Delivered at commit to every replica's listener, so watchers anywhere see the event.
        db.execute(statement(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_notify(?, ?)",
            vec![EVENTS_CHANNEL.into(), job.id.clone().into()],
        ))
        .await?;
    }
    Ok(sequence)
}

/// PostgreSQL channel announcing "job X has new events" (payload: the job id).
pub const EVENTS_CHANNEL: &str = "atelier_job_events";
/// PostgreSQL channel asking every replica to stop a task's running attempt (payload: the task id).
pub const CANCEL_CHANNEL: &str = "atelier_task_cancel";

/// Tells every replica to stop the attempts of these tasks; delivered at commit.
pub async fn announce_cancel<C: ConnectionTrait>(db: &C, task_ids: &[String]) -> Result<(), DbErr> {
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    for id in task_ids {
        db.execute(statement(
            sea_orm::DatabaseBackend::Postgres,
            "SELECT pg_notify(?, ?)",
            vec![CANCEL_CHANNEL.into(), id.clone().into()],
        ))
        .await?;
    }
    Ok(())
}

/// Stored events of a job after `after`, in order, at most `limit`.
pub async fn after<C: ConnectionTrait>(
    db: &C,
    job_id: &str,
    after: i64,
    limit: u64,
) -> Result<Vec<pb::JobEvent>, DbErr> {
    let rows = job_event::Entity::find()
        .filter(job_event::Column::JobId.eq(job_id))
        .filter(job_event::Column::Sequence.gt(after))
        .order_by_asc(job_event::Column::Sequence)
        .limit(limit)
        .all(db)
        .await?;
    rows.into_iter().map(decode).collect()
}

/// A position in the account-wide event stream: `(txid, id)` of the last event seen. Events are read
/// in that order and only once every older transaction has finished, so no event can ever be
/// committed behind a cursor already handed out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub txid: i64,
    pub id: i64,
}

impl Cursor {
    /// Reads a cursor as events carry it (`"<txid>-<id>"`); empty means "from now on" (`None` inside).
    pub fn parse(text: &str) -> Option<Option<Self>> {
        let text = text.trim();
        if text.is_empty() {
            return Some(None);
        }
        let (txid, id) = text.split_once('-')?;
        let cursor = Self {
            txid: txid.parse().ok()?,
            id: id.parse().ok()?,
        };
        (cursor.txid >= 0 && cursor.id >= 0).then_some(Some(cursor))
    }

    /// The position of a stored event.
    pub fn of(row: &job_event::Model) -> Self {
        Self {
            txid: row.txid,
            id: row.id,
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.txid, self.id)
    }
}

/// Only transactions older than every running one (PostgreSQL): their events can no longer appear.
const SETTLED: &str = "txid < pg_snapshot_xmin(pg_current_snapshot())::text::bigint";

/// Events of the scope's jobs after `cursor`, in commit-safe order, at most `limit`.
pub async fn since<C: ConnectionTrait>(
    db: &C,
    scope: &super::Scope,
    cursor: Cursor,
    limit: u64,
) -> Result<Vec<pb::JobEvent>, DbErr> {
    rows_since(db, Some(scope), cursor, limit)
        .await?
        .into_iter()
        .map(decode)
        .collect()
}

/// Stored events after `cursor` (of one scope, or of every tenant), in commit-safe order.
pub async fn rows_since<C: ConnectionTrait>(
    db: &C,
    scope: Option<&super::Scope>,
    cursor: Cursor,
    limit: u64,
) -> Result<Vec<job_event::Model>, DbErr> {
    let backend = db.get_database_backend();
    let settled = if backend == sea_orm::DatabaseBackend::Postgres {
        SETTLED
    } else {
        "1 = 1"
    };
    let mut values: Vec<sea_orm::Value> = Vec::new();
    let mut filter = String::new();
    if let Some(scope) = scope {
        filter.push_str("tenant_id = ? AND ");
        values.push(scope.tenant_id.clone().into());
        if let Some(account) = &scope.account_id {
            filter.push_str("account_id = ? AND ");
            values.push(account.clone().into());
        }
    }
    values.extend([
        cursor.txid.into(),
        cursor.txid.into(),
        cursor.id.into(),
        i64::try_from(limit).unwrap_or(i64::MAX).into(),
    ]);
    let sql = format!(
        "SELECT * FROM job_events WHERE {filter}(txid > ? OR (txid = ? AND id > ?)) AND {settled} \
         ORDER BY txid, id LIMIT ?"
    );
    job_event::Entity::find()
        .from_raw_sql(statement(backend, &sql, values))
        .all(db)
        .await
}

/// The position just past every settled event: where a stream that starts "now" begins.
pub async fn head<C: ConnectionTrait>(db: &C) -> Result<Cursor, DbErr> {
    let backend = db.get_database_backend();
    let settled = if backend == sea_orm::DatabaseBackend::Postgres {
        SETTLED
    } else {
        "1 = 1"
    };
    let sql =
        format!("SELECT * FROM job_events WHERE {settled} ORDER BY txid DESC, id DESC LIMIT 1");
    let row = job_event::Entity::find()
        .from_raw_sql(statement(backend, &sql, Vec::new()))
        .one(db)
        .await?;
    Ok(row.as_ref().map(Cursor::of).unwrap_or_default())
}

/// A stored event as the API shows it.
pub fn decode(row: job_event::Model) -> Result<pb::JobEvent, DbErr> {
    let cursor = Cursor::of(&row).to_string();
    let mut event = pb::JobEvent::decode(row.payload.as_slice()).map_err(|e| {
        DbErr::Custom(format!(
            "event {} of job {} is unreadable: {e}",
            row.sequence, row.job_id
        ))
    })?;
    event.job_id = row.job_id;
    event.sequence = u64::try_from(row.sequence).unwrap_or_default();
    event.time = Some(timestamp(row.created_at));
    event.cursor = cursor;
    Ok(event)
}

/// PostgreSQL channel carrying live-only events (payload: the event, protobuf in base64).
pub const LIVE_CHANNEL: &str = "atelier_job_live";
/// The largest encoded event [`announce_live`] sends: its base64 stays under PostgreSQL's 8000-byte
/// limit for a notification payload.
pub const LIVE_MAX_BYTES: usize = 5_900;

/// Announces a live-only event (never stored; `job_id` set) to the watchers of every replica,
/// delivered at commit; this replica's listener hands it to its own watchers too. Returns whether it
/// was announced; when not (SQLite, which has one process, or an event too large for a notification)
/// the caller publishes it on its own bus, so that this replica's watchers still get it.
pub async fn announce_live<C: ConnectionTrait>(
    db: &C,
    event: &pb::JobEvent,
) -> Result<bool, DbErr> {
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(false);
    }
    let bytes = event.encode_to_vec();
    if bytes.len() > LIVE_MAX_BYTES {
        tracing::warn!(job_id = %event.job_id, bytes = bytes.len(), "live event too large to announce");
        return Ok(false);
    }
    use base64::Engine as _;
    let payload = base64::engine::general_purpose::STANDARD.encode(bytes);
    db.execute(statement(
        sea_orm::DatabaseBackend::Postgres,
        "SELECT pg_notify(?, ?)",
        vec![LIVE_CHANNEL.into(), payload.into()],
    ))
    .await?;
    Ok(true)
}

/// A live event as [`announce_live`] sent it.
pub fn decode_live(payload: &str) -> Option<pb::JobEvent> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .ok()?;
    pb::JobEvent::decode(bytes.as_slice()).ok()
}
