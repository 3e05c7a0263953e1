//! The statements that end an attempt: success (alone, or many plain successes together), failure or
//! retry, the hand-back of a task to the queue, and the write of what a long attempt reported.

use std::collections::HashSet;

use atelier_proto::v1 as pb;
use prost::Message;
use sea_orm::{ConnectionTrait, DbErr};

use super::{code_number, guarded_update, Lease, ReportedColumns};
use crate::db::entities::job;
use crate::db::statement;
use crate::domain::{now_ms, TaskState};

/// Writes what the attempt reported so far; `None` when the attempt is no longer this lease's,
/// else the job, locked.
pub async fn write_reports<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    reported: &ReportedColumns,
) -> Result<Option<job::Model>, DbErr> {
    guarded_update(db, lease, Vec::new(), reported).await
}

/// The attempt succeeded with `outputs` (stored once), its stage done; `failure` is the failure of
/// the units that did not succeed, when some did not. `None` when the attempt is no longer this
/// lease's, else the job, locked.
pub async fn end_succeeded<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    reported: &ReportedColumns,
    outputs: &[pb::Output],
    from_cache: bool,
    failure: Option<&pb::Failure>,
) -> Result<Option<job::Model>, DbErr> {
    let set = vec![
        ("state", TaskState::Succeeded.into()),
        ("outputs", encode_outputs(outputs)?.into()),
        ("from_cache", from_cache.into()),
        ("stage", "done".into()),
        ("percent", 100i32.into()),
        ("finished_at", now_ms().into()),
        ("lease_owner", Option::<String>::None.into()),
        ("lease_expires_at", Option::<i64>::None.into()),
        ("failure_code", failure.map(|f| code_number(f.code)).into()),
        ("failure_message", failure.map(|f| f.message.clone()).into()),
    ];
    guarded_update(db, lease, set, reported).await
}

/// How a failed attempt ends.
#[derive(Clone, Copy, Debug)]
pub enum Failed {
    /// RETRY_WAIT until this time.
    RetryAt(i64),
    /// FAILED for good.
    Finally,
}

/// The attempt failed with `failure`: the task waits for its retry or fails for good. `None` when
/// the attempt is no longer this lease's, else the job, locked.
pub async fn end_failed<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    reported: &ReportedColumns,
    failure: &pb::Failure,
    failed: Failed,
) -> Result<Option<job::Model>, DbErr> {
    let mut set = match failed {
        Failed::RetryAt(at) => vec![
            ("state", TaskState::RetryWait.into()),
            ("run_after", at.into()),
        ],
        Failed::Finally => vec![
            ("state", TaskState::Failed.into()),
            ("finished_at", now_ms().into()),
        ],
    };
    set.extend([
        ("failure_code", code_number(failure.code).into()),
        ("failure_message", failure.message.clone().into()),
        ("lease_owner", Option::<String>::None.into()),
        ("lease_expires_at", Option::<i64>::None.into()),
    ]);
    guarded_update(db, lease, set, reported).await
}

/// The task goes back to the queue at `run_after` without spending the attempt. `None` when the
/// attempt is no longer this lease's, else the job, locked.
pub async fn end_handed_back<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    reported: &ReportedColumns,
    run_after: i64,
) -> Result<Option<job::Model>, DbErr> {
    let set = vec![
        ("state", TaskState::Queued.into()),
        // The guard holds the task at this attempt, so this is `attempts - 1`.
        ("attempts", (lease.attempt - 1).into()),
        ("run_after", run_after.into()),
        ("lease_owner", Option::<String>::None.into()),
        ("lease_expires_at", Option::<i64>::None.into()),
    ];
    guarded_update(db, lease, set, reported).await
}

/// A task's outputs as stored (see [`crate::db::stored_outputs`]).
fn encode_outputs(outputs: &[pb::Output]) -> Result<Vec<u8>, DbErr> {
    let mut blob = Vec::new();
    for output in outputs {
        output
            .encode_length_delimited(&mut blob)
            .map_err(|e| DbErr::Custom(e.to_string()))?;
    }
    Ok(blob)
}

/// One attempt of [`end_succeeded_all`]: it succeeded with its outputs, none from the cache and no
/// unit failed.
pub struct PlainSuccess<'a> {
    pub lease: &'a Lease,
    /// The source the attempt reported and did not write yet.
    pub source: Option<&'a pb::SourceInfo>,
    pub outputs: &'a [pb::Output],
}

/// Ends several attempts with success in one guarded `UPDATE … FROM (VALUES …)` (PostgreSQL), the
/// jobs already locked by the caller. Each attempt is still guarded by its lease: one no longer ours
/// writes nothing. Returns the ids of the tasks that were ended.
pub async fn end_succeeded_all<C: ConnectionTrait>(
    db: &C,
    ends: &[PlainSuccess<'_>],
) -> Result<HashSet<String>, DbErr> {
    let mut rows = Vec::with_capacity(ends.len());
    let mut values: Vec<sea_orm::Value> = vec![TaskState::Succeeded.into(), now_ms().into()];
    for end in ends {
        // The success sets the stage and percent itself; of the reported columns only the source
        // is written.
        rows.push("(?::text, ?::text, ?::integer, ?::bytea, ?::bytea)");
        values.extend([
            end.lease.task.id.clone().into(),
            end.lease.owner.clone().into(),
            end.lease.attempt.into(),
            encode_outputs(end.outputs)?.into(),
            end.source.map(|s| s.encode_to_vec()).into(),
        ]);
    }
    values.push(TaskState::Running.into());
    let sql = format!(
        "UPDATE tasks SET state = ?, outputs = v.outputs, from_cache = FALSE, stage = 'done', \
         percent = 100, finished_at = ?, lease_owner = NULL, lease_expires_at = NULL, \
         failure_code = NULL, failure_message = NULL, \
         source_info = COALESCE(v.source_info, tasks.source_info) \
         FROM (VALUES {}) v (id, owner, attempts, outputs, source_info) \
         WHERE tasks.id = v.id AND tasks.state = ? AND tasks.lease_owner = v.owner \
         AND tasks.attempts = v.attempts RETURNING tasks.id",
        rows.join(", ")
    );
    db.query_all(statement(db.get_database_backend(), &sql, values))
        .await?
        .into_iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect()
}
