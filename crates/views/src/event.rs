//! Job events as JSON: the `data:` of each Server-Sent Event, whose `event:` is the `type` and whose
//! `id:` is the `sequence`.

use atelier_proto::v1 as pb;
use pb::job_event::Event as Kind;
use serde::Serialize;

use atelier_types::{JobState, TaskState};

use crate::job::{Failure, Output, SourceInfo};
use crate::time;

/// What changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    JobState,
    TaskState,
    Progress,
    Log,
    Output,
    Queue,
    SourceFetched,
    /// An event kind this gateway does not know yet.
    #[default]
    Unknown,
}

impl EventType {
    /// The SSE `event:` name.
    pub fn name(self) -> &'static str {
        match self {
            Self::JobState => "job_state",
            Self::TaskState => "task_state",
            Self::Progress => "progress",
            Self::Log => "log",
            Self::Output => "output",
            Self::Queue => "queue",
            Self::SourceFetched => "source_fetched",
            Self::Unknown => "unknown",
        }
    }
}

/// One change of a job. Which optional fields are set depends on `type`.
#[derive(Clone, Debug, Default, Serialize)]
#[cfg_attr(feature = "utoipa", derive(utoipa::ToSchema))]
pub struct JobEvent {
    pub job_id: String,
    /// Per-job, increasing; the SSE `id:`.
    pub sequence: u64,
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub time: Option<String>,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// `job_state`: the job's new state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_state: Option<JobState>,
    /// `task_state`: the task's new state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_state: Option<TaskState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// `task_state` retry_wait: when the next attempt starts.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "utoipa", schema(format = DateTime))]
    pub retry_at: Option<String>,
    /// `progress`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
    /// `log`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `log`: `orchestrator` or `processor`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// `output`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Output>,
    /// `queue`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub estimated_seconds: Option<u32>,
    /// `source_fetched`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfo>,
}

impl JobEvent {
    /// Whether this event ends the job.
    pub fn is_terminal(&self) -> bool {
        self.job_state.is_some_and(JobState::is_terminal)
    }
}

impl From<&pb::JobEvent> for JobEvent {
    fn from(e: &pb::JobEvent) -> Self {
        let mut out = Self {
            job_id: e.job_id.clone(),
            sequence: e.sequence,
            time: time::to_text(e.time.as_ref()),
            kind: EventType::Unknown,
            ..Self::default()
        };
        match &e.event {
            Some(Kind::JobState(s)) => {
                out.kind = EventType::JobState;
                out.job_state = JobState::from_number(s.state);
                out.failure = s.failure.as_ref().map(Failure::from_pb);
            }
            Some(Kind::TaskState(s)) => {
                out.kind = EventType::TaskState;
                out.task_id = Some(s.task_id.clone());
                out.task_state = TaskState::from_number(s.state);
                out.attempts = Some(s.attempts);
                out.failure = s.failure.as_ref().map(Failure::from_pb);
                out.retry_at = time::to_text(s.retry_at.as_ref());
            }
            Some(Kind::Progress(p)) => {
                out.kind = EventType::Progress;
                out.task_id = Some(p.task_id.clone());
                out.stage = Some(p.stage.clone());
                out.percent = Some(p.percent);
            }
            Some(Kind::Log(l)) => {
                out.kind = EventType::Log;
                out.task_id = (!l.task_id.is_empty()).then(|| l.task_id.clone());
                out.level = Some(l.level.clone());
                out.message = Some(l.message.clone());
                out.origin = Some(l.origin.clone());
            }
            Some(Kind::Output(o)) => {
                out.kind = EventType::Output;
                out.task_id = Some(o.task_id.clone());
                out.output = o.output.as_ref().map(Output::from_pb);
            }
            Some(Kind::Queue(q)) => {
                out.kind = EventType::Queue;
                out.position = Some(q.position);
                out.estimated_seconds = Some(q.estimated_seconds);
            }
            Some(Kind::SourceFetched(s)) => {
                out.kind = EventType::SourceFetched;
                out.task_id = Some(s.task_id.clone());
                out.source = s.source.as_ref().map(SourceInfo::from_pb);
            }
            None => {}
        }
        out
    }
}
