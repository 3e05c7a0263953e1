//! The wire enums as lower-case snake_case words, and their protobuf numbers.

use atelier_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Maps a REST enum to its protobuf enum and back; an unknown or unspecified number from the
/// orchestrator is `None`.
macro_rules! wire_enum {
    ($(#[$doc:meta])* $name:ident => $pb:ident { $($variant:ident = $pbv:ident),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// The protobuf number.
            pub fn to_pb(self) -> i32 {
                match self {
                    $(Self::$variant => pb::$pb::$pbv as i32),+
                }
            }

            /// The value of a protobuf number, if it names one.
            pub fn from_pb(value: i32) -> Option<Self> {
                match pb::$pb::try_from(value).ok()? {
                    $(pb::$pb::$pbv => Some(Self::$variant),)+
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }
    };
}

wire_enum! {
    /// What a job makes.
    JobKind => JobKind {
        Transform = Transform,
        BasicClean = BasicClean,
        Edit = Edit,
        Generate = Generate,
        PoseSet = PoseSet,
    }
}

wire_enum! {
    /// `queued → running → succeeded | partially_succeeded | failed | cancelled`.
    JobState => JobState {
        Queued = Queued,
        Running = Running,
        Succeeded = Succeeded,
        PartiallySucceeded = PartiallySucceeded,
        Failed = Failed,
        Cancelled = Cancelled,
    }
}

wire_enum! {
    /// `queued → running → (retry_wait → running)* → succeeded | failed | cancelled`.
    TaskState => TaskState {
        Queued = Queued,
        Running = Running,
        RetryWait = RetryWait,
        Succeeded = Succeeded,
        Failed = Failed,
        Cancelled = Cancelled,
    }
}

wire_enum! {
    /// How a resize fits the box.
    Fit => Fit {
        Contain = Contain,
        Cover = Cover,
        Fill = Fill,
        Inside = Inside,
    }
}

wire_enum! {
    /// An image format.
    ImageFormat => ImageFormat {
        Jpeg = Jpeg,
        Png = Png,
        Webp = Webp,
    }
}

wire_enum! {
    /// How basic_clean finds the subject: `auto` (the configured model, else classical), `model`
    /// (a segmentation model or matting service; 3006 without one), `classical` (plain
    /// backgrounds only).
    MattingMethod => MattingMethod {
        Auto = Auto,
        Model = Model,
        Classical = Classical,
    }
}

wire_enum! {
    /// Which basic_clean outputs to make.
    CleanTemplate => CleanTemplate {
        All = All,
        Matting = Matting,
        WhiteBg = WhiteBg,
        Enhanced = Enhanced,
    }
}

wire_enum! {
    /// The setting of a pose_set shoot.
    Scene => Scene {
        Street = Street,
        Studio = Studio,
        Indoor = Indoor,
    }
}

impl JobState {
    /// Whether the state never changes again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// The kind of a job from the orchestrator; it always sets one.
pub fn job_kind(value: i32) -> Result<JobKind, ApiError> {
    JobKind::from_pb(value)
        .ok_or_else(|| ApiError::internal(format!("the orchestrator sent job kind {value}")))
}

/// The state of a job from the orchestrator; it always sets one.
pub fn job_state(value: i32) -> Result<JobState, ApiError> {
    JobState::from_pb(value)
        .ok_or_else(|| ApiError::internal(format!("the orchestrator sent job state {value}")))
}

/// The state of a task from the orchestrator; it always sets one.
pub fn task_state(value: i32) -> Result<TaskState, ApiError> {
    TaskState::from_pb(value)
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
            assert_eq!(JobKind::from_pb(kind.to_pb()), Some(kind));
        }
        assert_eq!(JobKind::from_pb(0), None);
        assert_eq!(JobState::from_pb(99), None);
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
