//! Task state changes. Every change of a running task is guarded by its lease owner and attempt, so a
//! replica that lost its lease (or a cancelled task) can never overwrite what happened since.

use atelier_proto::v1 as pb;
use sea_orm::{ConnectionTrait, DbErr};

use super::entities::{job, task};
use super::{jobs, statement};
use crate::domain::{now_ms, TaskState};

mod claim;
mod end;
mod reports;
mod sweep;

pub use claim::{claim, claim_external, external_lease, is_external, EXTERNAL_OWNER};
pub use end::{fail, hand_back, succeed, succeed_all, PlainSuccess, Shortfall};
pub use reports::{flush, Reported};
pub use sweep::{expired, past_deadline, recover, stale_queued, time_out};

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

fn task_event(
    task_id: &str,
    state: TaskState,
    attempts: i32,
    failure: Option<pb::Failure>,
    retry_at: Option<i64>,
) -> pb::job_event::Event {
    pb::job_event::Event::TaskState(pb::TaskStateChanged {
        task_id: task_id.to_string(),
        state: state.to_proto() as i32,
        attempts: u32::try_from(attempts).unwrap_or_default(),
        failure,
        retry_at: retry_at.map(crate::domain::timestamp),
    })
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

/// The task's guarded change, after the job's lock; returns the locked job as it is now, or `None`
/// when the attempt is no longer this lease's.
async fn guarded_update<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    set: &str,
    mut values: Vec<sea_orm::Value>,
) -> Result<Option<job::Model>, DbErr> {
    // Lock order: job first, like every other change of this job.
    let Some(job) = jobs::lock(db, &lease.job.id).await? else {
        return Ok(None);
    };
    values.extend(guard_values(lease));
    let r = db
        .execute(statement(
            db.get_database_backend(),
            &format!("UPDATE tasks SET {set} WHERE {GUARD}"),
            values,
        ))
        .await?;
    Ok((r.rows_affected() > 0).then_some(job))
}

/// A log line of the orchestrator about the attempt.
fn orchestrator_line(lease: &Lease, level: &str, message: String) -> pb::job_event::Event {
    pb::job_event::Event::Log(pb::LogLine {
        task_id: lease.task.id.clone(),
        level: level.to_string(),
        message,
        origin: "orchestrator".to_string(),
    })
}

/// A code's number as the `failure_code` column holds it.
fn code_number(code: atelier_codes::ErrorCode) -> i32 {
    i32::try_from(code.number()).unwrap_or_default()
}

/// A stored failure in the shape of the wire.
pub fn failure(code: atelier_codes::ErrorCode, message: &str) -> pb::Failure {
    pb::Failure {
        code: code.number(),
        reason: code.reason().to_string(),
        message: message.to_string(),
    }
}
