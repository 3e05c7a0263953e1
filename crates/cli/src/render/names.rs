//! Short names of the wire enums for people (and the words of the few JSON fields the views do not
//! cover); unknown numbers stay visible.

use atelier_types::{ImageFormat, JobState, Kind, TaskState, Word};

/// The word of a number, `unspecified` for 0 and `unknown(n)` for a number the CLI does not know.
fn name<W: Word>(value: i32) -> String {
    upper::<W>(value).to_ascii_lowercase()
}

/// A state as the proto names it, without the prefix: `SUCCEEDED`, `RETRY_WAIT`, `UNSPECIFIED`.
fn upper<W: Word>(value: i32) -> String {
    match W::from_number(value) {
        Some(word) => word.as_str().to_ascii_uppercase(),
        None if value == 0 => "UNSPECIFIED".to_string(),
        None => format!("UNKNOWN({value})"),
    }
}

/// `SUCCEEDED`, `RUNNING`, ….
pub fn job_state(value: i32) -> String {
    upper::<JobState>(value)
}

/// `SUCCEEDED`, `RETRY_WAIT`, ….
pub fn task_state(value: i32) -> String {
    upper::<TaskState>(value)
}

/// `transform`, `basic_clean`, `edit`, `generate`, `pose_set`.
pub fn kind(value: i32) -> String {
    name::<Kind>(value)
}

/// `jpeg`, `png`, `webp`, `unspecified`.
pub fn format(value: i32) -> String {
    name::<ImageFormat>(value)
}

/// `succeeded`, `running`, …: a job's state as JSON spells it (the REST API's word).
pub fn job_state_word(value: i32) -> String {
    name::<JobState>(value)
}

/// Whether a job in this state will not change again.
pub fn job_is_terminal(value: i32) -> bool {
    JobState::from_number(value).is_some_and(JobState::is_terminal)
}

/// Whether a task in this state will not change again.
pub fn task_is_terminal(value: i32) -> bool {
    TaskState::from_number(value).is_some_and(TaskState::is_terminal)
}

#[cfg(test)]
mod tests {
    use atelier_proto::v1 as pb;

    use super::*;

    #[test]
    fn names_drop_the_prefix() {
        assert_eq!(
            job_state(pb::JobState::PartiallySucceeded as i32),
            "PARTIALLY_SUCCEEDED"
        );
        assert_eq!(task_state(pb::TaskState::RetryWait as i32), "RETRY_WAIT");
        assert_eq!(kind(pb::JobKind::PoseSet as i32), "pose_set");
        assert_eq!(format(pb::ImageFormat::Webp as i32), "webp");
        assert_eq!(job_state(42), "UNKNOWN(42)");
        assert_eq!(
            job_state_word(pb::JobState::PartiallySucceeded as i32),
            "partially_succeeded"
        );
        assert!(job_is_terminal(pb::JobState::Cancelled as i32));
        assert!(!job_is_terminal(pb::JobState::Running as i32));
    }
}
