//! Job events for people. On a terminal, every running task has a progress line that is redrawn in
//! place (`\r` and cursor-up), and other events are printed above those lines; elsewhere (logs, pipes),
//! one line per event.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;

use atelier_proto::v1 as pb;
use pb::job_event::Event;

use crate::render::{human, names};

/// Running tasks shown at once; the rest are counted on one more line.
const MAX_ROWS: usize = 8;

/// Draws the events of one job.
pub struct Progress<W: Write> {
    out: W,
    live: bool,
    tasks: HashMap<String, u32>,
    /// Progress lines of running tasks, by task index.
    rows: Vec<(u32, String)>,
    /// Lines of the live block currently on screen, under which the cursor sits.
    drawn: usize,
}

impl<W: Write> Progress<W> {
    /// `live` redraws progress lines in place; otherwise every event gets its own line.
    pub fn new(out: W, live: bool, job: &pb::Job) -> Self {
        let tasks = job.tasks.iter().map(|t| (t.id.clone(), t.index)).collect();
        Self {
            out,
            live,
            tasks,
            rows: Vec::new(),
            drawn: 0,
        }
    }

    /// Shows one event.
    pub fn event(&mut self, event: &pb::JobEvent) {
        let Some(kind) = &event.event else { return };
        match kind {
            Event::Progress(p) => {
                let index = self.tasks.get(&p.task_id).copied().unwrap_or(0);
                self.progress(index, human::progress_line(index, p.percent, &p.stage));
            }
            Event::JobState(s) => {
                let mut text = format!("job {}", names::job_state(s.state));
                if let Some(f) = &s.failure {
                    let _ = write!(text, ": {}", human::failure(f));
                }
                self.note(&text);
            }
            Event::TaskState(s) => {
                if names::task_is_terminal(s.state) {
                    if let Some(index) = self.tasks.get(&s.task_id) {
                        self.rows.retain(|(i, _)| i != index);
                    }
                }
                let mut text = format!("{} {}", self.task(&s.task_id), names::task_state(s.state));
                if s.attempts > 0 {
                    let _ = write!(text, " (attempt {})", s.attempts);
                }
                if let Some(f) = &s.failure {
                    let _ = write!(text, ": {}", human::failure(f));
                }
                if let Some(t) = &s.retry_at {
                    let _ = write!(text, "; retrying at {t}");
                }
                self.note(&text);
            }
            Event::Log(l) => {
                let who = if l.task_id.is_empty() {
                    "job".to_string()
                } else {
                    self.task(&l.task_id)
                };
                self.note(&format!("{who} [{}] {}", l.level, l.message));
            }
            Event::Output(o) => {
                if let Some(output) = &o.output {
                    let text =
                        format!("{} output {}", self.task(&o.task_id), human::output(output));
                    self.note(&text);
                }
            }
            Event::Queue(q) => {
                self.note(&format!(
                    "queued: position {}, about {} s",
                    q.position, q.estimated_seconds
                ));
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

    /// Removes the live lines, so what follows starts on a clean line.
    pub fn finish(&mut self) {
        if self.live && self.drawn > 0 {
            self.rows.clear();
            self.redraw(None);
        }
        let _ = self.out.flush();
    }

    /// The writer, for tests.
    pub fn into_inner(self) -> W {
        self.out
    }

    fn task(&self, task_id: &str) -> String {
        match self.tasks.get(task_id) {
            Some(index) => format!("task {index}"),
            None => format!("task {task_id}"),
        }
    }

    fn progress(&mut self, index: u32, line: String) {
        if !self.live {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
            return;
        }
        match self.rows.binary_search_by_key(&index, |(i, _)| *i) {
            Ok(at) => self.rows[at].1 = line,
            Err(at) => self.rows.insert(at, (index, line)),
        }
        self.redraw(None);
    }

    fn note(&mut self, text: &str) {
        if self.live {
            self.redraw(Some(text));
        } else {
            let _ = writeln!(self.out, "{text}");
            let _ = self.out.flush();
        }
    }

    /// Moves up over the block on screen, clears it, prints `note` (which scrolls away with the
    /// output) and draws the progress lines again below it.
    fn redraw(&mut self, note: Option<&str>) {
        let mut frame = String::new();
        if self.drawn > 0 {
            let _ = write!(frame, "\x1b[{}A", self.drawn);
        }
        frame.push_str("\r\x1b[J");
        if let Some(note) = note {
            let _ = writeln!(frame, "{note}");
        }
        let mut drawn = 0;
        for (_, line) in self.rows.iter().take(MAX_ROWS) {
            let _ = writeln!(frame, "{line}");
            drawn += 1;
        }
        if self.rows.len() > MAX_ROWS {
            let _ = writeln!(
                frame,
                "… and {} more tasks running",
                self.rows.len() - MAX_ROWS
            );
            drawn += 1;
        }
        self.drawn = drawn;
        let _ = self.out.write_all(frame.as_bytes());
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> pb::Job {
        pb::Job {
            tasks: vec![pb::Task {
                id: "t0".into(),
                index: 0,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    fn progress(percent: u32) -> pb::JobEvent {
        pb::JobEvent {
            event: Some(Event::Progress(pb::TaskProgress {
                task_id: "t0".into(),
                stage: "resize".into(),
                percent,
            })),
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
        assert_eq!(
            text,
            "task 0 [#####-----] 50% resize\ntask 0 SUCCEEDED (attempt 1)\n"
        );
    }

    #[test]
    fn a_terminal_redraws_the_progress_lines_in_place() {
        let mut p = Progress::new(Vec::new(), true, &job());
        p.event(&progress(10));
        p.event(&progress(50));
        p.event(&done());
        p.finish();
        let text = String::from_utf8(p.into_inner()).expect("utf-8");
        assert_eq!(
            text,
            "\r\x1b[Jtask 0 [#---------] 10% resize\n\
             \x1b[1A\r\x1b[Jtask 0 [#####-----] 50% resize\n\
             \x1b[1A\r\x1b[Jtask 0 SUCCEEDED (attempt 1)\n"
        );
    }

    #[test]
    fn each_running_task_has_its_own_line() {
        let mut job = job();
        job.tasks.push(pb::Task {
            id: "t1".into(),
            index: 1,
            ..Default::default()
        });
        let mut p = Progress::new(Vec::new(), true, &job);
        p.event(&progress(10));
        let mut other = progress(30);
        if let Some(Event::Progress(e)) = &mut other.event {
            e.task_id = "t1".into();
        }
        p.event(&other);
        p.event(&progress(20));
        let text = String::from_utf8(p.into_inner()).expect("utf-8");
        let last_frame = text.rsplit("\r\x1b[J").next().expect("a frame");
        assert_eq!(
            last_frame,
            "task 0 [##--------] 20% resize\ntask 1 [###-------] 30% resize\n"
        );
        assert!(text.ends_with(
            "\x1b[2A\r\x1b[Jtask 0 [##--------] 20% resize\ntask 1 [###-------] 30% resize\n"
        ));
    }
}
