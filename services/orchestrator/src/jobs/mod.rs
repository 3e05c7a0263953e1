//! The application layer of jobs, between the gRPC adapters (`api/`) and the SQL (`db/`): what
//! submitting means (a request checked, priced, charged and inserted) and what follows each change
//! of a task (`lifecycle`), with no knowledge of how the API shows a job.

pub mod lifecycle;
pub mod submission;
pub mod submit;

pub use submit::{BatchSubmitted, Submitted, Submitter};
