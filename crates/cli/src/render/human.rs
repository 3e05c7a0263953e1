//! Short, aligned text for people.

use std::fmt::Write as _;

use atelier_proto::v1 as pb;

use super::names;

/// `error 3004 INVALID_DIMENSIONS: message`.
pub fn failure(f: &pb::Failure) -> String {
    format!("error {} {}: {}", f.code, f.reason, f.message)
}

/// Where a source came from: the URL or `upload:<id>`.
pub fn source(s: Option<&pb::Source>) -> String {
    match s.and_then(|s| s.source.as_ref()) {
        Some(pb::source::Source::Url(url)) => url.clone(),
        Some(pb::source::Source::UploadId(id)) => format!("upload:{id}"),
        None => "-".into(),
    }
}

/// `white-bg.jpg  640x480  48213 bytes  file:///…`, and for a cut-out how it was made:
/// `  matting model isnet, confidence 0.93`.
pub fn output(o: &pb::Output) -> String {
    let cached = if o.from_cache { "  (from cache)" } else { "" };
    let matting = match &o.matting {
        Some(m) if m.model.is_empty() => {
            format!("  matting {}, confidence {:.2}", m.method, m.confidence)
        }
        Some(m) => format!(
            "  matting {} {}, confidence {:.2}",
            m.method, m.model, m.confidence
        ),
        None => String::new(),
    };
    format!(
        "{}  {}x{}  {} bytes  {}{cached}{matting}",
        o.name, o.width, o.height, o.bytes, o.url
    )
}

/// A job: a header line `job <id> <STATE> …`, then one block per task with its outputs or failure.
pub fn job(j: &pb::Job) -> String {
    let mut out = String::new();
    let tasks = match j.tasks.len() {
        1 => "1 task".to_string(),
        n => format!("{n} tasks"),
    };
    let _ = writeln!(
        out,
        "job {}  {}  {}  {tasks}  cost {}, refunded {}",
        j.id,
        names::job_state(j.state),
        names::kind(j.kind),
        j.cost,
        j.refunded
    );
    let mut when = format!(
        "  account {}",
        if j.account.is_empty() {
            "-"
        } else {
            &j.account
        }
    );
    if let Some(t) = &j.created_at {
        let _ = write!(when, "  created {t}");
    }
    if let Some(t) = &j.finished_at {
        let _ = write!(when, "  finished {t}");
    }
    let _ = writeln!(out, "{when}");
    if j.state == pb::JobState::Queued as i32 {
        let _ = writeln!(
            out,
            "  queue position {}, about {} s",
            j.queue_position, j.estimated_seconds
        );
    }
    if !j.labels.is_empty() {
        let mut labels: Vec<_> = j.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let _ = writeln!(out, "  labels {}", labels.join(", "));
    }
    for t in &j.tasks {
        let mut line = format!("  task {}  {}", t.index, names::task_state(t.state));
        if t.attempts > 0 {
            let _ = write!(line, "  attempt {}", t.attempts);
        }
        if !names::task_is_terminal(t.state) && !t.stage.is_empty() {
            let _ = write!(line, "  {} {}%", t.stage, t.percent);
        }
        // Generate tasks have no source: nothing to show rather than a dash.
        if t.source.is_some() {
            let _ = write!(line, "  {}", source(t.source.as_ref()));
        }
        if t.from_cache {
            line.push_str("  (from cache)");
        }
        let _ = writeln!(out, "{line}");
        if let Some(f) = &t.failure {
            let _ = writeln!(out, "    {}", failure(f));
        }
        for o in &t.outputs {
            let _ = writeln!(out, "    {}", output(o));
        }
    }
    out
}

/// One line per job, for `list`.
pub fn job_row(j: &pb::Job) -> String {
    let created = j
        .created_at
        .as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string);
    format!(
        "{}  {:<19}  {:<11}  {:>3} tasks  {}  {}",
        j.id,
        names::job_state(j.state),
        names::kind(j.kind),
        j.tasks.len(),
        created,
        if j.account.is_empty() {
            "-"
        } else {
            &j.account
        }
    )
}

/// An account: balance, membership, active jobs.
pub fn account(a: &pb::Account) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let membership = match (a.member, &a.membership_expires_at) {
        (true, Some(t)) => format!("active until {t}"),
        (true, None) => "active".to_string(),
        (false, Some(t)) if u64::try_from(t.seconds).unwrap_or(0) <= now => format!("expired {t}"),
        (false, _) => "none".to_string(),
    };
    format!(
        "account {} (tenant {})\n  balance      {}\n  membership   {membership}\n  active jobs  {}\n",
        a.external_id, a.tenant_id, a.balance, a.active_jobs
    )
}

/// One ledger row.
pub fn ledger_entry(e: &pb::LedgerEntry) -> String {
    let created = e
        .created_at
        .as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string);
    let mut line = format!("{created}  {:<6}  {:>+6}  {}", e.kind, e.amount, e.reason);
    if !e.job_id.is_empty() {
        let _ = write!(line, "  job {}", e.job_id);
    }
    if !e.task_id.is_empty() {
        let _ = write!(line, "  task {}", e.task_id);
    }
    line
}

/// Whom an endpoint serves: `tenant-wide`, `account alice`, or the jobs' callback URLs.
fn endpoint_scope(e: &pb::WebhookEndpoint) -> String {
    match (e.url.is_empty(), e.account.is_empty()) {
        (true, _) => "callback_url of jobs".to_string(),
        (false, true) => "tenant-wide".to_string(),
        (false, false) => format!("account {}", e.account),
    }
}

/// One line per endpoint, for `webhooks list`:
/// `we_…  tenant-wide  terminal,progress  https://…` (and `secret …` when the server shows it).
pub fn webhook_endpoint(e: &pb::WebhookEndpoint) -> String {
    let mut line = format!(
        "{}  {}  {}",
        e.id,
        endpoint_scope(e),
        if e.events.is_empty() {
            "-".to_string()
        } else {
            e.events.join(",")
        }
    );
    if !e.url.is_empty() {
        let _ = write!(line, "  {}", e.url);
    }
    if !e.secret.is_empty() {
        let _ = write!(line, "  secret {}", e.secret);
    }
    line
}

/// The note printed when an endpoint was created (the secret itself goes to stdout).
pub fn webhook_created(e: &pb::WebhookEndpoint) -> String {
    format!(
        "webhook endpoint {} ({}; events {}) → {}; its signing secret below is shown only once",
        e.id,
        endpoint_scope(e),
        e.events.join(","),
        e.url
    )
}

/// One delivery attempt: `<time>  job <id>  event <id>  endpoint <id>  attempt 2  delivered (200)`.
pub fn webhook_delivery(d: &pb::WebhookDelivery) -> String {
    let attempted = d
        .attempted_at
        .as_ref()
        .map_or_else(|| "-".to_string(), ToString::to_string);
    let answer = if d.status == 0 {
        "network error".to_string()
    } else {
        format!("HTTP {}", d.status)
    };
    let outcome = match (&d.next_attempt_at, d.delivered) {
        (_, true) => format!("delivered ({answer})"),
        (Some(next), false) => format!("failed ({answer}: {}), next try {next}", d.error),
        (None, false) => format!("given up ({answer}: {})", d.error),
    };
    format!(
        "{attempted}  job {}  event {}  endpoint {}  attempt {}  {outcome}",
        d.job_id, d.event_id, d.endpoint_id, d.attempt
    )
}

/// A ten-cell bar: `[#####-----]`.
pub fn bar(percent: u32) -> String {
    let filled = (percent.min(100) as usize + 5) / 10;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(10 - filled))
}

/// `task 0 [#####-----] 50% resize`.
pub fn progress_line(index: u32, percent: u32, stage: &str) -> String {
    format!(
        "task {index} {} {}% {stage}",
        bar(percent),
        percent.min(100)
    )
    .trim_end()
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_fill_by_tenths() {
        assert_eq!(bar(0), "[----------]");
        assert_eq!(bar(50), "[#####-----]");
        assert_eq!(bar(100), "[##########]");
        assert_eq!(bar(250), "[##########]");
        assert_eq!(
            progress_line(0, 50, "resize"),
            "task 0 [#####-----] 50% resize"
        );
        assert_eq!(progress_line(3, 7, ""), "task 3 [#---------] 7%");
    }

    #[test]
    fn webhook_lines_say_whom_they_serve_and_how_attempts_ended() {
        let endpoint = pb::WebhookEndpoint {
            id: "we_1".into(),
            account: "alice".into(),
            url: "https://shop.example/hooks".into(),
            events: vec!["terminal".into(), "progress".into()],
            ..Default::default()
        };
        assert_eq!(
            webhook_endpoint(&endpoint),
            "we_1  account alice  terminal,progress  https://shop.example/hooks"
        );
        let callback = pb::WebhookEndpoint {
            id: "we_0".into(),
            secret: "whsec_x".into(),
            events: vec!["terminal".into()],
            ..Default::default()
        };
        assert_eq!(
            webhook_endpoint(&callback),
            "we_0  callback_url of jobs  terminal  secret whsec_x"
        );
        let delivered = pb::WebhookDelivery {
            job_id: "j1".into(),
            event_id: "ev".into(),
            endpoint_id: "we_1".into(),
            attempt: 3,
            status: 200,
            delivered: true,
            ..Default::default()
        };
        assert!(
            webhook_delivery(&delivered).ends_with("attempt 3  delivered (HTTP 200)"),
            "{}",
            webhook_delivery(&delivered)
        );
        let given_up = pb::WebhookDelivery {
            status: 0,
            error: "link-local address refused".into(),
            ..delivered
        };
        let given_up = pb::WebhookDelivery {
            delivered: false,
            ..given_up
        };
        assert!(
            webhook_delivery(&given_up)
                .ends_with("given up (network error: link-local address refused)"),
            "{}",
            webhook_delivery(&given_up)
        );
    }

    #[test]
    fn cut_outs_say_how_they_were_made() {
        let mut o = pb::Output {
            name: "matting.png".into(),
            url: "file:///tmp/matting.png".into(),
            width: 600,
            height: 400,
            bytes: 1234,
            matting: Some(pb::MattingInfo {
                method: "model".into(),
                model: "isnet".into(),
                confidence: 0.934,
            }),
            ..Default::default()
        };
        assert_eq!(
            output(&o),
            "matting.png  600x400  1234 bytes  file:///tmp/matting.png  matting model isnet, confidence 0.93"
        );
        o.matting = Some(pb::MattingInfo {
            method: "classical".into(),
            model: String::new(),
            confidence: 0.5,
        });
        assert!(
            output(&o).ends_with("file:///tmp/matting.png  matting classical, confidence 0.50"),
            "{}",
            output(&o)
        );
    }

    #[test]
    fn model_jobs_show_their_kind_and_every_image() {
        let image = |name: &str| pb::Output {
            name: name.into(),
            url: format!("file:///tmp/{name}"),
            width: 256,
            height: 256,
            bytes: 99,
            ..Default::default()
        };
        let j = pb::Job {
            id: "g1".into(),
            kind: pb::JobKind::Generate as i32,
            state: pb::JobState::Succeeded as i32,
            cost: 2,
            tasks: vec![pb::Task {
                state: pb::TaskState::Succeeded as i32,
                attempts: 1,
                outputs: vec![image("image-0.png"), image("image-1.png")],
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = job(&j);
        assert!(
            text.starts_with("job g1  SUCCEEDED  generate  1 task  cost 2, refunded 0\n"),
            "{text}"
        );
        assert!(text.contains("  task 0  SUCCEEDED  attempt 1\n"), "{text}");
        assert!(
            text.contains("    image-1.png  256x256  99 bytes"),
            "{text}"
        );
        let pose = pb::Job {
            kind: pb::JobKind::PoseSet as i32,
            ..j
        };
        assert!(
            job_row(&pose).contains("  pose_set  "),
            "{}",
            job_row(&pose)
        );
    }

    #[test]
    fn a_finished_job_lists_outputs_and_failures() {
        let j = pb::Job {
            id: "j1".into(),
            account: "shopper".into(),
            kind: pb::JobKind::BasicClean as i32,
            state: pb::JobState::PartiallySucceeded as i32,
            cost: 2,
            refunded: 1,
            tasks: vec![
                pb::Task {
                    index: 0,
                    state: pb::TaskState::Succeeded as i32,
                    attempts: 1,
                    source: Some(crate::requests::upload_source("u1")),
                    outputs: vec![pb::Output {
                        name: "white-bg.jpg".into(),
                        url: "file:///tmp/white-bg.jpg".into(),
                        width: 640,
                        height: 480,
                        bytes: 1234,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                pb::Task {
                    index: 1,
                    state: pb::TaskState::Failed as i32,
                    failure: Some(pb::Failure {
                        code: 3004,
                        reason: "INVALID_DIMENSIONS".into(),
                        message: "10x10".into(),
                    }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let text = job(&j);
        assert!(
            text.starts_with(
                "job j1  PARTIALLY_SUCCEEDED  basic_clean  2 tasks  cost 2, refunded 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("  task 0  SUCCEEDED  attempt 1  upload:u1\n"),
            "{text}"
        );
        assert!(
            text.contains("    white-bg.jpg  640x480  1234 bytes  file:///tmp/white-bg.jpg\n"),
            "{text}"
        );
        assert!(
            text.contains("    error 3004 INVALID_DIMENSIONS: 10x10\n"),
            "{text}"
        );
    }
}
