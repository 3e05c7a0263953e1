//! The life of a task after its submit: each change is a guarded transition of the task's row
//! (`db::tasks`), then what follows from it in the same transaction: its events with the
//! orchestrator's log lines, its refund, and the job's end once its last task has ended.
//!
//! Every function here runs inside the caller's transaction. The job's row is locked before the
//! task's changes, as in every change of a job: by the function itself, or by the caller where its
//! documentation says so.

use atelier_codes::ErrorCode;
use atelier_proto::v1 as pb;
use sea_orm::{ConnectionTrait, DbErr};

use crate::db::entities::job;
use crate::db::tasks::Lease;
use crate::db::{accounts, events, jobs, tasks};
use crate::domain::{JobState, TaskState};

mod claim;
mod end;
mod reports;
mod sweep;

pub use claim::{claim, claim_external};
pub use end::{fail, hand_back, succeed, succeed_all, PlainSuccess, Shortfall};
pub use reports::{flush, Reported};
pub use sweep::{recover, time_out};

/// A stored failure in the shape of the wire.
pub fn failure(code: ErrorCode, message: &str) -> pb::Failure {
    pb::Failure {
        code: code.number(),
        reason: code.reason().to_string(),
        message: message.to_string(),
    }
}

/// The event of a task moving to `state`.
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

/// A log line of the orchestrator about the attempt.
fn orchestrator_line(lease: &Lease, level: &str, message: String) -> pb::job_event::Event {
    pb::job_event::Event::Log(pb::LogLine {
        task_id: lease.task.id.clone(),
        level: level.to_string(),
        message,
        origin: "orchestrator".to_string(),
    })
}

/// The job's end in `state`, when it has one: its event appended to `events`, and the job-row
/// change that goes with it.
fn end_in(state: Option<JobState>, events: &mut Vec<pb::job_event::Event>) -> events::JobUpdate {
    match state {
        Some(state) => {
            events.push(jobs::state_event(state));
            jobs::ending(state)
        }
        None => events::JobUpdate::default(),
    }
}

/// Records `events` of the job, with its end when all its tasks are terminal now: one job-row write,
/// one event row, and none when there is nothing to record. Call with the job locked.
async fn record_with_end<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    mut events: Vec<pb::job_event::Event>,
) -> Result<(), DbErr> {
    let update = end_in(jobs::final_state(db, job).await?, &mut events);
    if !events.is_empty() {
        events::record(db, job, events, update).await?;
    }
    Ok(())
}

/// Cancels every task of the job not yet terminal, refunding each once, and ends the job CANCELLED.
/// Returns the ids of tasks that were running, whose work must be stopped. A terminal job is left as
/// it is. Call with the job locked.
pub async fn cancel<C: ConnectionTrait>(db: &C, job: &job::Model) -> Result<Vec<String>, DbErr> {
    if job.state.is_terminal() {
        return Ok(Vec::new());
    }
    let mut running = Vec::new();
    for task in tasks::cancel(db, job).await? {
        if task.state == TaskState::Running {
            running.push(task.id.clone());
        }
        accounts::refund_task(db, job, &task.id, "task cancelled").await?;
        events::append(
            db,
            job,
            task_event(&task.id, TaskState::Cancelled, task.attempts, None, None),
        )
        .await?;
    }
    let mut events = Vec::with_capacity(1);
    let update = end_in(Some(JobState::Cancelled), &mut events);
    events::record(db, job, events, update).await?;
    events::announce_cancel(db, &running).await?;
    Ok(running)
}
