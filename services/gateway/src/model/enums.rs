//! The wire enums as lower-case snake_case words (the shared vocabulary of `atelier_types`).

pub use atelier_types::{
    CleanTemplate, Fit, ImageFormat, JobState, Kind as JobKind, MattingMethod, Scene, TaskState,
};

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
