//! The wire enums as lower-case snake_case words (the shared vocabulary of `atelier_types`), and
//! their protobuf numbers as the orchestrator sends them.

pub use atelier_types::{
    CleanTemplate, Fit, ImageFormat, JobState, Kind as JobKind, MattingMethod, Scene, TaskState,
};

use crate::error::ApiError;

/// The kind of a job from the orchestrator; it always sets one.
pub fn job_kind(value: i32) -> Result<JobKind, ApiError> {
    JobKind::from_number(value)
        .ok_or_else(|| ApiError::internal(format!("the orchestrator sent job kind {value}")))
}

/// The state of a job from the orchestrator; it always sets one.
pub fn job_state(value: i32) -> Result<JobState, ApiError> {
    JobState::from_number(value)
        .ok_or_else(|| ApiError::internal(format!("the orchestrator sent job state {value}")))
}

/// The state of a task from the orchestrator; it always sets one.
pub fn task_state(value: i32) -> Result<TaskState, ApiError> {
    TaskState::from_number(value)
        .ok_or_else(|| ApiError::internal(format!("the orchestrator sent task state {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unspecified() {
        for kind in [
            JobKind::Transform,
            JobKind::BasicClean,
            JobKind::Edit,
            JobKind::Generate,
            JobKind::PoseSet,
        ] {
            assert_eq!(JobKind::from_number(kind.number()), Some(kind));
        }
        assert_eq!(JobKind::from_number(0), None);
        assert_eq!(JobState::from_number(99), None);
        assert_eq!(
            serde_json::to_string(&JobState::PartiallySucceeded).expect("json"),
            "\"partially_succeeded\""
        );
        assert_eq!(
            serde_json::to_string(&TaskState::RetryWait).expect("json"),
            "\"retry_wait\""
        );
    }
}
