//! The orchestrator's rules over the shared vocabulary (kinds and states live in `atelier_types`,
//! re-exported here): a job's model and units, its final state, and the database's time unit.

use atelier_proto::v1 as pb;

pub use atelier_types::{JobState, Kind, TaskState};

/// The model a job names, empty for the processor's default (and for engine kinds).
pub fn model_of(params: &pb::JobParams) -> &str {
    use pb::job_params::Params;
    match &params.params {
        Some(Params::Edit(p)) => &p.model,
        Some(Params::Generate(p)) => &p.model,
        Some(Params::PoseSet(p)) => &p.model,
        _ => "",
    }
}

/// Units of work in one task: a pose set's shots, the images a generate or edit call asks for.
/// A unit that fails while others succeed is refunded its share of the task's price.
pub fn units_per_task(params: &pb::JobParams) -> i64 {
    use pb::job_params::Params;
    match &params.params {
        Some(Params::PoseSet(_)) => POSE_SET_SHOTS,
        Some(Params::Generate(p)) => i64::from(p.num_images.max(1)),
        Some(Params::Edit(p)) => i64::from(p.num_images.max(1)),
        _ => 1,
    }
}

/// Shots in a pose set.
pub const POSE_SET_SHOTS: i64 = 12;

/// The state a job ends in once all its tasks are terminal.
pub fn final_job_state(tasks: &[TaskState], cancelled: bool) -> JobState {
    let succeeded = tasks.iter().filter(|s| **s == TaskState::Succeeded).count();
    if cancelled && succeeded < tasks.len() {
        JobState::Cancelled
    } else if succeeded == tasks.len() {
        JobState::Succeeded
    } else if succeeded > 0 {
        JobState::PartiallySucceeded
    } else if tasks.iter().all(|s| *s == TaskState::Cancelled) {
        JobState::Cancelled
    } else {
        JobState::Failed
    }
}

/// Milliseconds since the unix epoch, the time unit of the database.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A stored time as a protobuf timestamp.
pub fn timestamp(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A protobuf timestamp as a stored time.
pub fn from_timestamp(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds
        .saturating_mul(1000)
        .saturating_add(i64::from(ts.nanos) / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip() {
        for s in [
            "queued",
            "running",
            "retry_wait",
            "succeeded",
            "failed",
            "cancelled",
        ] {
            assert_eq!(TaskState::parse(s).map(TaskState::as_str), Some(s));
        }
        assert_eq!(Kind::parse("basic_clean"), Some(Kind::BasicClean));
        assert_eq!(Kind::from_proto(pb::JobKind::Unspecified), None);
    }

    #[test]
    fn final_state_follows_tasks() {
        use TaskState::*;
        assert_eq!(
            final_job_state(&[Succeeded, Succeeded], false),
            JobState::Succeeded
        );
        assert_eq!(
            final_job_state(&[Succeeded, Failed], false),
            JobState::PartiallySucceeded
        );
        assert_eq!(final_job_state(&[Failed, Failed], false), JobState::Failed);
        assert_eq!(
            final_job_state(&[Cancelled, Failed], true),
            JobState::Cancelled
        );
        assert_eq!(
            final_job_state(&[Succeeded, Cancelled], true),
            JobState::Cancelled
        );
    }

    #[test]
    fn timestamps_round_trip() {
        for ms in [0, 1, 999, 1_700_000_000_123, -5] {
            assert_eq!(from_timestamp(&timestamp(ms)), ms);
        }
    }
}
