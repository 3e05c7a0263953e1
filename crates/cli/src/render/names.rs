//! Short names of the wire enums, for people and for JSON; unknown numbers stay visible.

use atelier_types::{
    CleanTemplate, Fit, ImageFormat, JobState, Kind, MattingMethod, Scene, TaskState, Word,
};

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

/// `contain`, `cover`, `fill`, `inside`, `unspecified`.
pub fn fit(value: i32) -> String {
    name::<Fit>(value)
}

/// `all`, `matting`, `white_bg`, `enhanced`, `unspecified`.
pub fn template(value: i32) -> String {
    name::<CleanTemplate>(value)
}

/// `auto`, `model`, `classical`, `unspecified`.
pub fn matting_method(value: i32) -> String {
    name::<MattingMethod>(value)
}

/// `street`, `studio`, `indoor`, `unspecified`.
pub fn scene(value: i32) -> String {
    name::<Scene>(value)
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
        assert_eq!(template(pb::CleanTemplate::WhiteBg as i32), "white_bg");
        assert_eq!(job_state(42), "UNKNOWN(42)");
        assert!(job_is_terminal(pb::JobState::Cancelled as i32));
        assert!(!job_is_terminal(pb::JobState::Running as i32));
    }
}
