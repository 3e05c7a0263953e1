//! The JSON views of a job, its tasks, their outputs and its events, written once: the REST API
//! answers them, webhooks deliver them (a finished job, a task's failure, an output) and the CLI
//! prints them with `--json`, so the three cannot drift apart. Enums are the lower-case words of
//! `atelier_types`, times RFC 3339 text, and what is unset is null.
//!
//! The views are read from the protobuf messages the orchestrator answers; a number no word names
//! (a newer orchestrator) is an [`Unknown`].

pub mod event;
pub mod job;
pub mod params;
pub mod time;

pub use event::{EventType, JobEvent};
pub use job::{Failure, Job, MattingInfo, Output, Source, SourceInfo, Task, Thumbnail};
pub use params::{
    BasicCleanParams, Crop, EditParams, GenerateParams, PoseSetParams, Resize, TransformParams,
};

/// A view as a JSON value (a view always serializes; null if one ever did not).
pub fn json<T: serde::Serialize>(view: &T) -> serde_json::Value {
    serde_json::to_value(view).unwrap_or(serde_json::Value::Null)
}

/// A protobuf enum number the views have no word for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown {
    /// What the number stands for, for example `job state`.
    pub what: &'static str,
    pub value: i32,
}

impl Unknown {
    /// The word of `value`, or an [`Unknown`] naming `what`.
    pub fn of<W>(what: &'static str, value: i32, word: fn(i32) -> Option<W>) -> Result<W, Self> {
        word(value).ok_or(Self { what, value })
    }
}

impl std::fmt::Display for Unknown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the orchestrator sent {} {}", self.what, self.value)
    }
}

impl std::error::Error for Unknown {}
