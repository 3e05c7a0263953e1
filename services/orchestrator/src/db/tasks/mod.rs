//! The statements that change tasks. Every change of a running task is guarded by its lease owner and
//! attempt, so a replica that lost its lease (or a cancelled task) can never overwrite what happened
//! since. What follows a change (its events, a refund, the job's end) is `jobs::lifecycle`'s.

use atelier_proto::v1 as pb;
use prost::Message;
use sea_orm::{ConnectionTrait, DbErr};

use super::entities::{job, task};
use super::{jobs, statement};
use crate::domain::{now_ms, TaskState};

mod claim;
mod end;
mod sweep;

pub use claim::{claim, claim_external, external_lease, is_external, Claimed, EXTERNAL_OWNER};
pub use end::{
    end_failed, end_handed_back, end_succeeded, end_succeeded_all, write_reports, Failed,
    PlainSuccess,
};
pub use sweep::{
    cancel, expired, fail_unfinished, past_deadline, recover, stale_queued, Recovered,
};

/// A task attempt this replica holds the lease of.
#[derive(Clone, Debug)]
pub struct Lease {
    pub task: task::Model,
    pub job: job::Model,
    pub owner: String,
    pub attempt: i32,
}

/// What became of a guarded change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The change was made.
    Applied,
    /// The task is no longer this attempt's (cancelled, timed out or taken over): stop working on it.
    Lost,
}

/// What a running attempt reported that its next write stores on the task's row: the source the
/// processor read and the latest progress. An end that sets a column itself (a success's stage and
/// percent) wins over it.
#[derive(Clone, Debug, Default)]
pub struct ReportedColumns {
    pub source: Option<pb::SourceInfo>,
    pub progress: Option<(String, u32)>,
}

impl ReportedColumns {
    fn columns(&self) -> Vec<(&'static str, sea_orm::Value)> {
        let mut columns: Vec<(&'static str, sea_orm::Value)> = Vec::new();
        if let Some(source) = &self.source {
            columns.push(("source_info", source.encode_to_vec().into()));
        }
        if let Some((stage, percent)) = &self.progress {
            columns.push(("stage", stage.clone().into()));
            columns.push(("percent", i32::try_from(*percent).unwrap_or(100).into()));
        }
        columns
    }
}

/// The guard every change of a running attempt carries.
const GUARD: &str = "id = ? AND state = ? AND lease_owner = ? AND attempts = ?";

fn guard_values(lease: &Lease) -> [sea_orm::Value; 4] {
    [
        lease.task.id.clone().into(),
        TaskState::Running.into(),
        lease.owner.clone().into(),
        lease.attempt.into(),
    ]
}

/// Extends the lease; `Lost` when the attempt is no longer this replica's.
pub async fn renew<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    lease_ms: i64,
) -> Result<Outcome, DbErr> {
    let mut values = vec![(now_ms() + lease_ms).into()];
    values.extend(guard_values(lease));
    let r = db
        .execute(statement(
            db.get_database_backend(),
            &format!("UPDATE tasks SET lease_expires_at = ? WHERE {GUARD}"),
            values,
        ))
        .await?;
    Ok(if r.rows_affected() == 0 {
        Outcome::Lost
    } else {
        Outcome::Applied
    })
}

/// The task's guarded change of `set` and the reported columns `set` does not name, after the job's
/// lock; returns the locked job as it is now, or `None` when the attempt is no longer this lease's.
async fn guarded_update<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    set: Vec<(&'static str, sea_orm::Value)>,
    reported: &ReportedColumns,
) -> Result<Option<job::Model>, DbErr> {
    // Lock order: job first, like every other change of this job.
    let Some(job) = jobs::lock(db, &lease.job.id).await? else {
        return Ok(None);
    };
    let mut parts = Vec::with_capacity(set.len() + 3);
    let mut values = Vec::with_capacity(set.len() + 7);
    let mut named = Vec::with_capacity(set.len());
    for (column, value) in set {
        parts.push(format!("{column} = ?"));
        values.push(value);
        named.push(column);
    }
    for (column, value) in reported.columns() {
        if !named.contains(&column) {
            parts.push(format!("{column} = ?"));
            values.push(value);
        }
    }
    // Log lines alone still go through the guard, so a lost attempt writes nothing.
    if parts.is_empty() {
        parts.push("lease_owner = lease_owner".to_string());
    }
    values.extend(guard_values(lease));
    let r = db
        .execute(statement(
            db.get_database_backend(),
            &format!("UPDATE tasks SET {} WHERE {GUARD}", parts.join(", ")),
            values,
        ))
        .await?;
    Ok((r.rows_affected() > 0).then_some(job))
}

/// A code's number as the `failure_code` column holds it.
fn code_number(code: u32) -> i32 {
    i32::try_from(code).unwrap_or_default()
}
