//! Short names of the wire enums, for people and for JSON; unknown numbers stay visible.

use atelier_proto::v1 as pb;

fn short(name: Option<&'static str>, prefix: &str, value: i32) -> String {
    match name {
        Some(name) => name.strip_prefix(prefix).unwrap_or(name).to_string(),
        None => format!("UNKNOWN({value})"),
    }
}

/// `SUCCEEDED`, `RUNNING`, ….
pub fn job_state(value: i32) -> String {
    short(
        pb::JobState::try_from(value).ok().map(|s| s.as_str_name()),
        "JOB_STATE_",
        value,
    )
}

/// `SUCCEEDED`, `RETRY_WAIT`, ….
pub fn task_state(value: i32) -> String {
    short(
        pb::TaskState::try_from(value).ok().map(|s| s.as_str_name()),
        "TASK_STATE_",
        value,
    )
}

/// `transform`, `basic_clean`, `edit`, `generate`, `pose_set`.
pub fn kind(value: i32) -> String {
    short(
        pb::JobKind::try_from(value).ok().map(|s| s.as_str_name()),
        "JOB_KIND_",
        value,
    )
    .to_ascii_lowercase()
}

/// `jpeg`, `png`, `webp`, `unspecified`.
pub fn format(value: i32) -> String {
    short(
        pb::ImageFormat::try_from(value)
            .ok()
            .map(|s| s.as_str_name()),
        "IMAGE_FORMAT_",
        value,
    )
    .to_ascii_lowercase()
}

/// `contain`, `cover`, `fill`, `inside`, `unspecified`.
pub fn fit(value: i32) -> String {
    short(
        pb::Fit::try_from(value).ok().map(|s| s.as_str_name()),
        "FIT_",
        value,
    )
    .to_ascii_lowercase()
}

/// `all`, `matting`, `white_bg`, `enhanced`, `unspecified`.
pub fn template(value: i32) -> String {
    short(
        pb::CleanTemplate::try_from(value)
            .ok()
            .map(|s| s.as_str_name()),
        "CLEAN_TEMPLATE_",
        value,
    )
    .to_ascii_lowercase()
}

/// `auto`, `model`, `classical`, `unspecified`.
pub fn matting_method(value: i32) -> String {
    short(
        pb::MattingMethod::try_from(value)
            .ok()
            .map(|s| s.as_str_name()),
        "MATTING_METHOD_",
        value,
    )
    .to_ascii_lowercase()
}

/// `street`, `studio`, `indoor`, `unspecified`.
pub fn scene(value: i32) -> String {
    short(
        pb::Scene::try_from(value).ok().map(|s| s.as_str_name()),
        "SCENE_",
        value,
    )
    .to_ascii_lowercase()
}

/// Whether a job in this state will not change again.
pub fn job_is_terminal(value: i32) -> bool {
    matches!(
        pb::JobState::try_from(value),
        Ok(pb::JobState::Succeeded
            | pb::JobState::PartiallySucceeded
            | pb::JobState::Failed
            | pb::JobState::Cancelled)
    )
}

/// Whether a task in this state will not change again.
pub fn task_is_terminal(value: i32) -> bool {
    matches!(
        pb::TaskState::try_from(value),
        Ok(pb::TaskState::Succeeded | pb::TaskState::Failed | pb::TaskState::Cancelled)
    )
}

#[cfg(test)]
mod tests {
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
