//! What a running attempt reports (source, log lines, progress), kept in memory and written with
//! the attempt's end or while it runs long.

use atelier_proto::v1 as pb;
use sea_orm::{ConnectionTrait, DbErr};

use super::orchestrator_line;
use crate::db::events;
use crate::db::tasks::{self, Lease, Outcome, ReportedColumns};

/// Most events an attempt keeps in memory between two writes; past it, log lines are counted and one
/// line says how many were dropped.
const MAX_REPORTED: usize = 500;

/// What a running attempt reported that is not written yet: the processor's source, log lines and
/// the orchestrator's own notes, in order, and its latest progress. It is written with the attempt's
/// next change (its end, usually) or by [`flush`] while the attempt runs long, so a short attempt
/// costs no write for its reports. Of the progress only the latest is stored, as the task's stage
/// and percent and one event: at most once a second while the attempt runs, and with its end.
#[derive(Clone, Debug, Default)]
pub struct Reported {
    events: Vec<pb::job_event::Event>,
    source: Option<pb::SourceInfo>,
    progress: Option<(String, u32)>,
    dropped: u64,
}

impl Reported {
    /// The source the processor read, with the orchestrator's line about it.
    pub fn source_fetched(&mut self, lease: &Lease, info: pb::SourceInfo, processor_id: &str) {
        let line = format!(
            "attempt {} on processor {processor_id}: source {} {}x{}, {} bytes",
            lease.attempt,
            pb::ImageFormat::try_from(info.format)
                .map_or("unknown", |f| f.as_str_name())
                .trim_start_matches("IMAGE_FORMAT_")
                .to_ascii_lowercase(),
            info.width,
            info.height,
            info.bytes
        );
        self.push(pb::job_event::Event::SourceFetched(
            pb::SourceFetchedEvent {
                task_id: lease.task.id.clone(),
                source: Some(info.clone()),
            },
        ));
        self.push(orchestrator_line(lease, "info", line));
        self.source = Some(info);
    }

    /// The latest progress of the attempt.
    pub fn progress(&mut self, stage: &str, percent: u32) {
        self.progress = Some((stage.to_string(), percent.min(100)));
    }

    /// A log line of the attempt.
    pub fn log(&mut self, lease: &Lease, level: &str, message: &str, origin: &str) {
        self.push(pb::job_event::Event::Log(pb::LogLine {
            task_id: lease.task.id.clone(),
            level: level.to_string(),
            message: message.to_string(),
            origin: origin.to_string(),
        }));
    }

    /// Whether anything waits to be written.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.source.is_none() && self.progress.is_none()
    }

    fn push(&mut self, event: pb::job_event::Event) {
        if self.events.len() < MAX_REPORTED {
            self.events.push(event);
        } else {
            self.dropped += 1;
        }
    }

    /// The source the processor read, leaving none pending.
    pub(super) fn take_source(&mut self) -> Option<pb::SourceInfo> {
        self.source.take()
    }

    /// The task columns and events to write, leaving nothing pending.
    pub(super) fn take(&mut self, lease: &Lease) -> (ReportedColumns, Vec<pb::job_event::Event>) {
        let mut columns = ReportedColumns {
            source: self.take_source(),
            progress: None,
        };
        let mut events = std::mem::take(&mut self.events);
        if let Some((stage, percent)) = self.progress.take() {
            // The latest progress is stored too, once, so a replay shows how far the attempt got.
            events.push(pb::job_event::Event::Progress(pb::TaskProgress {
                task_id: lease.task.id.clone(),
                stage: stage.clone(),
                percent,
            }));
            columns.progress = Some((stage, percent));
        }
        if self.dropped > 0 {
            let line = format!(
                "{} reports of the attempt were not kept (more than {MAX_REPORTED} between two writes)",
                self.dropped
            );
            events.push(orchestrator_line(lease, "warn", line));
            self.dropped = 0;
        }
        (columns, events)
    }
}

/// Writes what the attempt reported so far (a long attempt, every few seconds); `Lost` when the
/// attempt is no longer this replica's.
pub async fn flush<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    reported: &mut Reported,
) -> Result<Outcome, DbErr> {
    if reported.is_empty() {
        return Ok(Outcome::Applied);
    }
    let (columns, events) = reported.take(lease);
    let Some(job) = tasks::write_reports(db, lease, &columns).await? else {
        return Ok(Outcome::Lost);
    };
    if !events.is_empty() {
        events::record(db, &job, events, events::JobUpdate::default()).await?;
    }
    Ok(Outcome::Applied)
}
