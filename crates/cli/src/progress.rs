//! Job events for people: on a terminal, one progress line redrawn in place with `\r` and other events
//! printed above it; elsewhere (logs, pipes), one line per event.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use atelier_proto::v1 as pb;
use pb::job_event::Event;

use crate::render::{human, names};

/// Erase the current terminal line.
const CLEAR: &str = "\r\x1b[2K";

/// Draws the events of one job.
pub struct Progress<W: Write> {
    out: W,
    live: bool,
    line: Option<String>,
    tasks: HashMap<String, u32>,
    finished: HashSet<String>,
}

impl<W: Write> Progress<W> {
    /// `live` redraws a progress line in place; otherwise every event gets its own line.
    pub fn new(out: W, live: bool, job: &pb::Job) -> Self {
        let tasks = job.tasks.iter().map(|t| (t.id.clone(), t.index)).collect();
        let finished = job.tasks.iter().filter(|t| names::task_is_terminal(t.state)).map(|t| t.id.clone()).collect();
        Self { out, live, line: None, tasks, finished }
    }

    /// Shows one event.
    pub fn event(&mut self, event: &pb::JobEvent) {
        let Some(kind) = &event.event else { return };
        match kind {
            Event::Progress(p) => {
                let mut line = human::progress_line(self.index(&p.task_id), p.percent, &p.stage);
                if self.tasks.len() > 1 {
                    line = format!("{}/{} done  {line}", self.finished.len(), self.tasks.len());
                }
                self.progress(line);
            }
            Event::JobState(s) => {
                let mut text = format!("job {}", names::job_state(s.state));
                if let Some(f) = &s.failure {
                    text = format!("{text}: {}", human::failure(f));
                }
                self.note(&text);
            }
            Event::TaskState(s) => {
                if names::task_is_terminal(s.state) {
                    self.finished.insert(s.task_id.clone());
                }
                let mut text = format!("{} {}", self.task(&s.task_id), names::task_state(s.state));
                if s.attempts > 0 {
                    text.push_str(&format!(" (attempt {})", s.attempts));
                }
                if let Some(f) = &s.failure {
                    text.push_str(&format!(": {}", human::failure(f)));
                }
                if let Some(t) = &s.retry_at {
                    text.push_str(&format!("; retrying at {t}"));
                }
                self.note(&text);
            }
            Event::Log(l) => {
                let who = if l.task_id.is_empty() { "job".to_string() } else { self.task(&l.task_id) };
                self.note(&format!("{who} [{}] {}", l.level, l.message));
            }
            Event::Output(o) => {
                if let Some(output) = &o.output {
                    let text = format!("{} output {}", self.task(&o.task_id), human::output(output));
                    self.note(&text);
                }
            }
            Event::Queue(q) => {
                self.note(&format!("queued: position {}, about {} s", q.position, q.estimated_seconds));
            }
            Event::SourceFetched(s) => {
                if let Some(info) = &s.source {
                    let text = format!(
                        "{} source {} {}x{}, {} bytes",
                        self.task(&s.task_id),
                        names::format(info.format),
                        info.width,
                        info.height,
                        info.bytes
                    );
                    self.note(&text);
                }
            }
        }
    }

    /// Clears the live line, so what follows starts on a clean line.
    pub fn finish(&mut self) {
        if self.live && self.line.take().is_some() {
            let _ = write!(self.out, "{CLEAR}");
        }
        let _ = self.out.flush();
    }

    /// The writer, for tests.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn index(&self, task_id: &str) -> u32 {
        self.tasks.get(task_id).copied().unwrap_or(0)
    }

    fn task(&self, task_id: &str) -> String {
        match self.tasks.get(task_id) {
            Some(index) => format!("task {index}"),
            None => format!("task {task_id}"),
        }
    }

    fn progress(&mut self, line: String) {
        if self.live {
            let _ = write!(self.out, "{CLEAR}{line}");
            self.line = Some(line);
        } else {
            let _ = writeln!(self.out, "{line}");
        }
        let _ = self.out.flush();
    }

    fn note(&mut self, text: &str) {
        if self.live {
            let _ = writeln!(self.out, "{CLEAR}{text}");
            if let Some(line) = &self.line {
                let _ = write!(self.out, "{line}");
            }
        } else {
            let _ = writeln!(self.out, "{text}");
        }
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> pb::Job {
        pb::Job {
            tasks: vec![pb::Task { id: "t0".into(), index: 0, ..Default::default() }],
            ..Default::default()
        }
    }

    fn progress(percent: u32) -> pb::JobEvent {
        pb::JobEvent {
            event: Some(Event::Progress(pb::TaskProgress { task_id: "t0".into(), stage: "resize".into(), percent })),
            ..Default::default()
        }
    }

    fn done() -> pb::JobEvent {
        pb::JobEvent {
            event: Some(Event::TaskState(pb::TaskStateChanged {
                task_id: "t0".into(),
                state: pb::TaskState::Succeeded as i32,
                attempts: 1,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn piped_output_gets_one_line_per_event() {
        let mut p = Progress::new(Vec::new(), false, &job());
        p.event(&progress(50));
        p.event(&done());
        p.finish();
        let text = String::from_utf8(p.into_inner()).expect("utf-8");
        assert_eq!(text, "task 0 [#####-----] 50% resize\ntask 0 SUCCEEDED (attempt 1)\n");
    }

    #[test]
    fn a_terminal_redraws_the_progress_line_in_place() {
        let mut p = Progress::new(Vec::new(), true, &job());
        p.event(&progress(10));
        p.event(&progress(50));
        p.event(&done());
        p.finish();
        let text = String::from_utf8(p.into_inner()).expect("utf-8");
        assert_eq!(
            text,
            "\r\x1b[2Ktask 0 [#---------] 10% resize\r\x1b[2Ktask 0 [#####-----] 50% resize\
             \r\x1b[2Ktask 0 SUCCEEDED (attempt 1)\ntask 0 [#####-----] 50% resize\r\x1b[2K"
        );
    }
}
