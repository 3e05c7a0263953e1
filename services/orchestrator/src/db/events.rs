//! The job event log. Each event takes the next per-job sequence from `jobs.last_sequence` in the same
//! transaction that records the change, so sequences have no gaps and a reconnecting watcher can
//! replay exactly what it missed.

use atelier_proto::v1 as pb;
use prost::Message;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entities::{job, job_event};
use super::statement;
use crate::domain::{now_ms, timestamp, JobState};

/// What a recorded change does to the job row besides moving its sequence; written in the same
/// `UPDATE`, so a change of the job costs one row write however many events it records.
#[derive(Clone, Copy, Debug, Default)]
pub struct JobUpdate {
    /// The job's new state.
    pub state: Option<JobState>,
    /// When the job reached a terminal state.
    pub finished_at: Option<i64>,
}

/// The columns an event row is written with, in the order both writes give them.
const EVENT_COLUMNS: &str =
    "(job_id, tenant_id, account_id, sequence, events, payload, created_at)";

/// Appends an event to the job's log and returns its sequence.
pub async fn append<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    event: pb::job_event::Event,
) -> Result<i64, DbErr> {
    record(db, job, vec![event], JobUpdate::default()).await
}

/// Appends `events` to the job's log as one row, in order, and applies `update` to the job row in the
/// statement that takes their sequences. Returns the last event's sequence (the job's current one when
/// there is nothing to record and nothing to update).
pub async fn record<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    events: Vec<pb::job_event::Event>,
    update: JobUpdate,
) -> Result<i64, DbErr> {
    let backend = db.get_database_backend();
    let now = now_ms();
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let mut set = String::from("last_sequence = last_sequence + ?, updated_at = ?");
    let mut values: Vec<sea_orm::Value> = vec![count.into(), now.into()];
    if let Some(state) = update.state {
        set.push_str(", state = ?");
        values.push(state.into());
    }
    if let Some(at) = update.finished_at {
        set.push_str(", finished_at = ?");
        values.push(at.into());
    }
    values.push(job.id.clone().into());
    let missing = || DbErr::RecordNotFound(format!("job {}", job.id));
    if backend == sea_orm::DatabaseBackend::Postgres && !events.is_empty() {
        // One round trip: the job's sequence moves, the row takes it, and watchers are told.
        let n = i32::try_from(events.len()).unwrap_or(i32::MAX);
        values.extend([
            job.id.clone().into(),
            job.tenant_id.clone().into(),
            job.account_id.clone().into(),
            n.into(),
            encode(events)?.into(),
            now.into(),
            EVENTS_CHANNEL.into(),
            job.id.clone().into(),
        ]);
        let row = db
            .query_one(statement(
                backend,
                &format!(
                    "WITH j AS (UPDATE jobs SET {set} WHERE id = ? RETURNING last_sequence), \
                     e AS (INSERT INTO job_events {EVENT_COLUMNS} \
                     SELECT ?, ?, ?, last_sequence, ?, ?, ? FROM j RETURNING sequence) \
                     SELECT e.sequence FROM e CROSS JOIN LATERAL (SELECT pg_notify(?, ?)) announced"
                ),
                values,
            ))
            .await?
            .ok_or_else(missing)?;
        return row.try_get_by_index(0);
    }
    let row = db
        .query_one(statement(
            backend,
            &format!("UPDATE jobs SET {set} WHERE id = ? RETURNING last_sequence"),
            values,
        ))
        .await?
        .ok_or_else(missing)?;
    let last: i64 = row.try_get_by_index(0)?;
    if events.is_empty() {
        return Ok(last);
    }
    insert_row(db, job, last, events, now).await?;
    Ok(last)
}

/// One job's part of [`record_many`]: its events, as one row, and what they do to the job row.
pub struct JobChange<'a> {
    pub job: &'a job::Model,
    pub events: Vec<pb::job_event::Event>,
    pub update: JobUpdate,
}

/// [`record`] for several jobs at once, each job at most once. On PostgreSQL every job row moves and
/// every event row is inserted and announced in one statement, so a batch of claims or ends costs
/// one round trip for its events however many jobs it touches; elsewhere each job is recorded in
/// turn. Returns each job's last sequence, in the order given.
pub async fn record_many<C: ConnectionTrait>(
    db: &C,
    changes: Vec<JobChange<'_>>,
) -> Result<Vec<i64>, DbErr> {
    let backend = db.get_database_backend();
    if backend != sea_orm::DatabaseBackend::Postgres
        || changes.len() < 2
        || changes.iter().any(|c| c.events.is_empty())
    {
        let mut sequences = Vec::with_capacity(changes.len());
        for change in changes {
            sequences.push(record(db, change.job, change.events, change.update).await?);
        }
        return Ok(sequences);
    }
    let now = now_ms();
    let ids: Vec<String> = changes.iter().map(|c| c.job.id.clone()).collect();
    let mut rows = Vec::with_capacity(changes.len());
    let mut values: Vec<sea_orm::Value> = Vec::with_capacity(changes.len() * 5 + 3);
    for change in changes {
        rows.push("(?::text, ?::integer, ?::text, ?::bigint, ?::bytea)");
        values.extend([
            change.job.id.clone().into(),
            i32::try_from(change.events.len())
                .unwrap_or(i32::MAX)
                .into(),
            change
                .update
                .state
                .map_or(sea_orm::Value::String(None), Into::into),
            change.update.finished_at.into(),
            encode(change.events)?.into(),
        ]);
    }
    values.extend([now.into(), now.into(), EVENTS_CHANNEL.into()]);
    let sql = format!(
        "WITH v (id, n, state, finished_at, payload) AS (VALUES {}), \
         j AS (UPDATE jobs SET last_sequence = jobs.last_sequence + v.n, updated_at = ?, \
         state = COALESCE(v.state, jobs.state), finished_at = COALESCE(v.finished_at, jobs.finished_at) \
         FROM v WHERE jobs.id = v.id \
         RETURNING jobs.id, jobs.tenant_id, jobs.account_id, jobs.last_sequence), \
         e AS (INSERT INTO job_events {EVENT_COLUMNS} \
         SELECT j.id, j.tenant_id, j.account_id, j.last_sequence, v.n, v.payload, ? \
         FROM j JOIN v ON v.id = j.id RETURNING job_id, sequence) \
         SELECT e.job_id, e.sequence FROM e CROSS JOIN LATERAL (SELECT pg_notify(?, e.job_id)) announced",
        rows.join(", ")
    );
    let written = db.query_all(statement(backend, &sql, values)).await?;
    let mut sequences = std::collections::HashMap::with_capacity(written.len());
    for row in written {
        let id: String = row.try_get_by_index(0)?;
        let sequence: i64 = row.try_get_by_index(1)?;
        sequences.insert(id, sequence);
    }
    ids.iter()
        .map(|id| {
            sequences
                .get(id)
                .copied()
                .ok_or_else(|| DbErr::RecordNotFound(format!("job {id}")))
        })
        .collect()
}

/// Stores the first events of a job just inserted with `last_sequence` already counting them.
pub async fn record_first<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    events: Vec<pb::job_event::Event>,
) -> Result<(), DbErr> {
    insert_row(db, job, job.last_sequence, events, job.created_at).await
}

/// The columns and values of a just-made job's first event row, for a statement that inserts the
/// job too ([`super::jobs::insert_charged`]); `job.last_sequence` already counts `events`.
pub(super) fn first_row(
    job: &job::Model,
    events: Vec<pb::job_event::Event>,
) -> Result<(&'static str, Vec<sea_orm::Value>), DbErr> {
    let count = i32::try_from(events.len()).unwrap_or(i32::MAX);
    Ok((
        EVENT_COLUMNS,
        vec![
            job.id.clone().into(),
            job.tenant_id.clone().into(),
            job.account_id.clone().into(),
            job.last_sequence.into(),
            count.into(),
            encode(events)?.into(),
            job.created_at.into(),
        ],
    ))
}

/// Inserts one row holding `events`, the last of which has sequence `last`, and announces it.
async fn insert_row<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    last: i64,
    events: Vec<pb::job_event::Event>,
    now: i64,
) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let count = i32::try_from(events.len()).unwrap_or(i32::MAX);
    let payload = encode(events)?;
    let mut values: Vec<sea_orm::Value> = vec![
        job.id.clone().into(),
        job.tenant_id.clone().into(),
        job.account_id.clone().into(),
        last.into(),
        count.into(),
        payload.into(),
        now.into(),
    ];
    let insert = format!("INSERT INTO job_events {EVENT_COLUMNS} VALUES (?, ?, ?, ?, ?, ?, ?)");
    if backend == sea_orm::DatabaseBackend::Postgres {
        // Delivered at commit to every replica's listener, so watchers anywhere see the event.
        values.extend([EVENTS_CHANNEL.into(), job.id.clone().into()]);
        db.execute(statement(
            backend,
            &format!(
                "WITH e AS ({insert} RETURNING sequence) \
                 SELECT 1 FROM e CROSS JOIN LATERAL (SELECT pg_notify(?, ?)) announced"
            ),
            values,
        ))
        .await?;
    } else {
        db.execute(statement(backend, &insert, values)).await?;
    }
    Ok(())
}

/// A row's payload: one event as a plain `JobEvent`, several length-delimited.
fn encode(events: Vec<pb::job_event::Event>) -> Result<Vec<u8>, DbErr> {
    let single = events.len() == 1;
    let mut payload = Vec::new();
    for event in events {
        let message = pb::JobEvent {
            event: Some(event),
            ..Default::default()
        };
        if single {
            return Ok(message.encode_to_vec());
        }
        message
            .encode_length_delimited(&mut payload)
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    Ok(payload)
}

/// PostgreSQL channel announcing "job X has new events" (payload: the job id).
pub const EVENTS_CHANNEL: &str = "atelier_job_events";
/// PostgreSQL channel asking every replica to stop a task's running attempt (payload: the task id).
pub const CANCEL_CHANNEL: &str = "atelier_task_cancel";

/// PostgreSQL channel telling every replica to forget the API keys it remembers (one was revoked).
pub const KEYS_CHANNEL: &str = "atelier_keys";

/// Tells every replica that an API key was revoked; delivered at commit.
pub async fn announce_keys_changed<C: ConnectionTrait>(db: &C) -> Result<(), DbErr> {
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(());
    }
    db.execute(statement(
        sea_orm::DatabaseBackend::Postgres,
        "SELECT pg_notify(?, '')",
        vec![KEYS_CHANNEL.into()],
    ))
    .await?;
    Ok(())
}

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

/// Stored events of a job after sequence `after`, in order, at most `limit`.
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
    let mut events = Vec::new();
    for row in rows {
        events.extend(
            decode(row)?
                .into_iter()
                .filter(|e| i64::try_from(e.sequence).unwrap_or(i64::MAX) > after),
        );
    }
    events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(events)
}

/// A position in the account-wide event stream: `(txid, id)` of the last row seen and how many of
/// its events were seen (a row holds fewer than 65,535). Rows are read in that order and only once every older transaction has
/// finished, so no event can ever be committed behind a cursor already handed out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub txid: i64,
    pub id: i64,
    /// Events of row `id` already seen; [`Cursor::WHOLE_ROW`] when all of them were.
    pub seen: u32,
}

impl Cursor {
    /// `seen` of a cursor past every event of its row.
    pub const WHOLE_ROW: u32 = 0xFFFF;

    /// Reads a cursor as events carry it: `"<txid>-<n>"`, where `n` packs the row id (high bits) and
    /// the events of that row seen (low 16 bits, all ones for the whole row); empty means "from now
    /// on" (`None` inside).
    pub fn parse(text: &str) -> Option<Option<Self>> {
        let text = text.trim();
        if text.is_empty() {
            return Some(None);
        }
        let (txid, n) = text.split_once('-')?;
        let txid: i64 = txid.parse().ok()?;
        let n: i64 = n.parse().ok()?;
        (txid >= 0 && n >= 0).then_some(Some(Self {
            txid,
            id: n >> 16,
            seen: u32::try_from(n & 0xFFFF).unwrap_or(Self::WHOLE_ROW),
        }))
    }

    /// The position past every event of a stored row.
    pub fn of(row: &job_event::Model) -> Self {
        Self {
            txid: row.txid,
            id: row.id,
            seen: Self::WHOLE_ROW,
        }
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = (self.id << 16) | i64::from(self.seen.min(Self::WHOLE_ROW));
        write!(f, "{}-{n}", self.txid)
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
    let mut events = Vec::new();
    for row in rows_since(db, Some(scope), cursor, limit).await? {
        let skip = if (row.txid, row.id) == (cursor.txid, cursor.id) {
            cursor.seen as usize
        } else {
            0
        };
        events.extend(decode(row)?.into_iter().skip(skip));
    }
    events.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(events)
}

/// Stored rows after `cursor` (of one scope, or of every tenant), in commit-safe order; the cursor's
/// own row comes again when only some of its events were seen.
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
    let same_row = if cursor.seen == Cursor::WHOLE_ROW {
        ">"
    } else {
        ">="
    };
    let sql = format!(
        "SELECT * FROM job_events WHERE {filter}(txid > ? OR (txid = ? AND id {same_row} ?)) AND {settled} \
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

/// The events of a stored row as the API shows them, each with its sequence and cursor.
pub fn decode(row: job_event::Model) -> Result<Vec<pb::JobEvent>, DbErr> {
    let unreadable = |e: prost::DecodeError| {
        DbErr::Custom(format!(
            "event {} of job {} is unreadable: {e}",
            row.sequence, row.job_id
        ))
    };
    let count = usize::try_from(row.events.max(1)).unwrap_or(1);
    let mut events = Vec::with_capacity(count);
    if count == 1 {
        events.push(pb::JobEvent::decode(row.payload.as_slice()).map_err(unreadable)?);
    } else {
        let mut bytes = row.payload.as_slice();
        while !bytes.is_empty() {
            events.push(pb::JobEvent::decode_length_delimited(&mut bytes).map_err(unreadable)?);
        }
    }
    let first = row.sequence - i64::try_from(events.len()).unwrap_or(0) + 1;
    let whole = Cursor::of(&row);
    let last = events.len();
    for (i, event) in events.iter_mut().enumerate() {
        let cursor = if i + 1 == last {
            whole
        } else {
            Cursor {
                seen: u32::try_from(i + 1).unwrap_or(Cursor::WHOLE_ROW - 1),
                ..whole
            }
        };
        event.job_id = row.job_id.clone();
        event.sequence = u64::try_from(first + i64::try_from(i).unwrap_or(0)).unwrap_or_default();
        event.time = Some(timestamp(row.created_at));
        event.cursor = cursor.to_string();
    }
    Ok(events)
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
