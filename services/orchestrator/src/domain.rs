//! The orchestrator's own words for kinds and states, stored as short strings and mapped to the wire
//! enums at the edge.

use atelier_proto::v1 as pb;

/// What a job makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    Transform,
    BasicClean,
    Edit,
    Generate,
    PoseSet,
}

/// A job's state; the last four are terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    PartiallySucceeded,
    Failed,
    Cancelled,
}

/// A task's state; the last three are terminal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskState {
    Queued,
    Running,
    RetryWait,
    Succeeded,
    Failed,
    Cancelled,
}

macro_rules! string_enum {
    ($ty:ident, $pb:ty, $( $variant:ident => $text:literal, $pbv:ident ),+ $(,)?) => {
        impl $ty {
            /// The stored form.
            pub fn as_str(self) -> &'static str {
                match self { $( Self::$variant => $text ),+ }
            }

            /// Reads the stored form back.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $( $text => Some(Self::$variant), )+ _ => None }
            }

            /// The wire enum.
            pub fn to_proto(self) -> $pb {
                match self { $( Self::$variant => <$pb>::$pbv ),+ }
            }

            /// From the wire enum; `None` for UNSPECIFIED.
            pub fn from_proto(value: $pb) -> Option<Self> {
                match value { $( <$pb>::$pbv => Some(Self::$variant), )+ _ => None }
            }
        }
    };
}

string_enum!(Kind, pb::JobKind,
    Transform => "transform", Transform,
    BasicClean => "basic_clean", BasicClean,
    Edit => "edit", Edit,
    Generate => "generate", Generate,
    PoseSet => "pose_set", PoseSet,
);

string_enum!(JobState, pb::JobState,
    Queued => "queued", Queued,
    Running => "running", Running,
    Succeeded => "succeeded", Succeeded,
    PartiallySucceeded => "partially_succeeded", PartiallySucceeded,
    Failed => "failed", Failed,
    Cancelled => "cancelled", Cancelled,
);

string_enum!(TaskState, pb::TaskState,
    Queued => "queued", Queued,
    Running => "running", Running,
    RetryWait => "retry_wait", RetryWait,
    Succeeded => "succeeded", Succeeded,
    Failed => "failed", Failed,
    Cancelled => "cancelled", Cancelled,
);

impl JobState {
    /// Terminal states never change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Succeeded | Self::PartiallySucceeded | Self::Failed | Self::Cancelled
        )
    }
}

impl TaskState {
    /// Terminal states never change again.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// Stored forms of the states that still need work.
    pub const ACTIVE: [&'static str; 3] = ["queued", "running", "retry_wait"];
}

impl Kind {
    /// The kind a set of parameters asks for.
    pub fn of(params: &pb::job_params::Params) -> Self {
        use pb::job_params::Params;
        match params {
            Params::Transform(_) => Self::Transform,
            Params::BasicClean(_) => Self::BasicClean,
            Params::Edit(_) => Self::Edit,
            Params::Generate(_) => Self::Generate,
            Params::PoseSet(_) => Self::PoseSet,
        }
    }

    /// Whether the kind runs on a model provider rather than the local engine.
    pub fn uses_model(self) -> bool {
        matches!(self, Self::Edit | Self::Generate | Self::PoseSet)
    }
}

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
