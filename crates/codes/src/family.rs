//! The client families Atelier answers for (the systems it replaces, described in the seeds), and
//! what more than one service must agree on about them: the family name a job carries, and seed
//! 000's codes and states, which the gateway's `/result/` and the orchestrator's family-shaped
//! callbacks both answer with.

use atelier_proto::v1 as pb;

use crate::ErrorCode;

/// A client family: the gateway routes a job came through, stored on the job. It selects the
/// operator's per-family prices and the shape of the job's callback body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    /// Seed 000, the image-edit API (`/submit/`, `/batch_submit/`).
    ImageEditor,
    /// Seed 001, the task API (`/api/task/create`).
    TaskApi,
    /// Seed 002, the image generator (`/api/v1/generate`).
    Generator,
    /// Seed 004, the image-edit service (`/api/v1/image-edit/submit`).
    ImageEdit,
}

impl Family {
    /// Every family.
    pub const ALL: [Family; 4] = [
        Self::ImageEditor,
        Self::TaskApi,
        Self::Generator,
        Self::ImageEdit,
    ];

    /// The name on the wire and in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ImageEditor => "image_editor",
            Self::TaskApi => "task_api",
            Self::Generator => "generator",
            Self::ImageEdit => "image_edit",
        }
    }

    /// The family of a name; `None` for an unknown one.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// Seed 000 (the image-edit API): its codes and its three states.
///
/// Codes (its own, as its document lists them: 1002-1006 for the API, 3001-3017 for images):
///
/// | Atelier | here | why |
/// | --- | --- | --- |
/// | 1001, 1002, 2001, 2002, 2003 | 1002 | the only "not allowed" code it has (权限不足) |
/// | 1003, 1005 | 1003 | request invalid |
/// | 1004 | 1004 | task does not exist |
/// | 1006, 1007, 1008, 1009, 3009 | 1006 | internal error (the old system retried those) |
/// | 3001, 3006, 3007, 3010 | 3001 | model call failed |
/// | 3002, 3005 | 3002 | image download failed |
/// | 3003, 3004, 3008, 3017 | same | same meaning |
///
/// States: Atelier `queued` and `running` → `processing`; `succeeded` and `partially_succeeded` →
/// `success`; `failed` and `cancelled` → `failed`.
pub mod image_editor {
    use super::{pb, ErrorCode};

    /// This API's code for an Atelier code.
    pub fn code_for(code: ErrorCode) -> u32 {
        use ErrorCode::*;
        match code {
            Unauthenticated | PermissionDenied | MembershipRequired | QuotaExhausted
            | TooManyActiveJobs => 1002,
            InvalidArgument | IdempotencyConflict => 1003,
            NotFound => 1004,
            Internal | TimedOut | Cancelled | Unavailable | StorageFailed => 1006,
            ModelCallFailed | ModelUnavailable | ContentRejected | MattingUncertain => 3001,
            DownloadFailed | SourceBlocked => 3002,
            UnsupportedFormat => 3003,
            InvalidDimensions => 3004,
            SourceTooLarge => 3008,
            DecodeFailed => 3017,
        }
    }

    /// This API's code for a stored Atelier code number (1006 for a number it does not know).
    pub fn code_for_number(number: u32) -> u32 {
        ErrorCode::from_number(number).map_or(1006, code_for)
    }

    /// A task's state in this API.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Status {
        Processing,
        Success,
        Failed,
    }

    impl Status {
        /// The name this API answers.
        pub fn as_str(self) -> &'static str {
            match self {
                Self::Processing => "processing",
                Self::Success => "success",
                Self::Failed => "failed",
            }
        }
    }

    /// The state of a job (a task of this API is one Atelier job).
    pub fn status_of(job: &pb::Job) -> Status {
        use pb::JobState as S;
        match S::try_from(job.state) {
            Ok(S::Succeeded | S::PartiallySucceeded) => Status::Success,
            Ok(S::Failed | S::Cancelled) => Status::Failed,
            _ => Status::Processing,
        }
    }

    /// `error_code` and `error_message` of a job: set once it `failed`, from its first task
    /// failure (a cancelled job without one is 1006, "the task was cancelled").
    pub fn error_of(job: &pb::Job) -> (Option<u32>, Option<String>) {
        if status_of(job) != Status::Failed {
            return (None, None);
        }
        match job.tasks.iter().find_map(|t| t.failure.as_ref()) {
            Some(f) => (Some(code_for_number(f.code)), Some(f.message.clone())),
            None if job.state == pb::JobState::Cancelled as i32 => {
                (Some(1006), Some("the task was cancelled".to_string()))
            }
            None => (Some(1006), Some("the task failed".to_string())),
        }
    }

    /// `prompt`: what the edit was asked to change (none for jobs that are not edits).
    pub fn prompt_of(job: &pb::Job) -> Option<String> {
        match job.params.as_ref().and_then(|p| p.params.as_ref()) {
            Some(pb::job_params::Params::Edit(edit)) => Some(edit.prompt.clone()),
            _ => None,
        }
    }

    /// `image_url`: the source as submitted, its URL or `upload:<id>`.
    pub fn image_url_of(job: &pb::Job) -> String {
        let source = job.tasks.first().and_then(|t| t.source.as_ref());
        match source.and_then(|s| s.source.as_ref()) {
            Some(pb::source::Source::Url(url)) => url.clone(),
            Some(pb::source::Source::UploadId(id)) => format!("upload:{id}"),
            None => String::new(),
        }
    }

    /// `callback_url`, when the job has one.
    pub fn callback_url_of(job: &pb::Job) -> Option<String> {
        Some(job.callback_url.clone()).filter(|u| !u.is_empty())
    }

    /// `processing_time`: seconds from the first task's start to the job's end, once it ended.
    pub fn processing_time(job: &pb::Job) -> Option<f64> {
        let started = job
            .tasks
            .iter()
            .filter_map(|t| t.started_at.as_ref())
            .min_by_key(|t| (t.seconds, t.nanos))?;
        let finished = job.finished_at.as_ref()?;
        let seconds = |t: &prost_types::Timestamp| t.seconds as f64 + f64::from(t.nanos) / 1e9;
        Some((seconds(finished) - seconds(started)).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::image_editor::{code_for, error_of, status_of, Status};
    use super::*;

    #[test]
    fn family_names_round_trip() {
        for family in Family::ALL {
            assert_eq!(Family::parse(family.as_str()), Some(family));
        }
        assert_eq!(Family::parse(""), None);
        assert_eq!(Family::parse("ImageEditor"), None);
    }

    #[test]
    fn image_editor_codes_keep_their_meanings() {
        assert_eq!(code_for(ErrorCode::Unauthenticated), 1002);
        assert_eq!(code_for(ErrorCode::QuotaExhausted), 1002);
        assert_eq!(code_for(ErrorCode::NotFound), 1004);
        assert_eq!(code_for(ErrorCode::ModelUnavailable), 3001);
        assert_eq!(code_for(ErrorCode::SourceBlocked), 3002);
        assert_eq!(code_for(ErrorCode::SourceTooLarge), 3008);
        assert_eq!(code_for(ErrorCode::StorageFailed), 1006);
    }

    #[test]
    fn image_editor_states_and_errors() {
        let mut job = pb::Job {
            state: pb::JobState::Running as i32,
            ..Default::default()
        };
        assert_eq!(status_of(&job), Status::Processing);
        assert_eq!(error_of(&job), (None, None));
        job.state = pb::JobState::PartiallySucceeded as i32;
        assert_eq!(status_of(&job).as_str(), "success");
        job.state = pb::JobState::Failed as i32;
        job.tasks.push(pb::Task {
            failure: Some(pb::Failure {
                code: 3007,
                reason: "CONTENT_REJECTED".into(),
                message: "refused".into(),
            }),
            ..Default::default()
        });
        assert_eq!(error_of(&job), (Some(3001), Some("refused".into())));
        job.tasks.clear();
        job.state = pb::JobState::Cancelled as i32;
        assert_eq!(error_of(&job).0, Some(1006));
    }
}
