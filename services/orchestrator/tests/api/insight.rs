//! What callers can see: the account-wide event stream (resumable, no gaps, scoped), statistics,
//! queue positions while waiting, and the Prometheus endpoint.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use atelier_proto::v1 as pb;
use tonic::Streaming;

use crate::helpers::*;
use crate::on_both_databases;

async fn watch_events(
    app: &TestApp,
    request: tonic::Request<pb::WatchEventsRequest>,
) -> Streaming<pb::JobEvent> {
    app.jobs
        .clone()
        .watch_events(request)
        .await
        .expect("watch events")
        .into_inner()
}

/// Reads events until `done` says the collected list is complete.
async fn read_until(
    stream: &mut Streaming<pb::JobEvent>,
    done: impl Fn(&[pb::JobEvent]) -> bool,
) -> Vec<pb::JobEvent> {
    let mut events = Vec::new();
    while !done(&events) {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "stream went quiet after {} events: {events:#?}",
                    events.len()
                )
            })
            .expect("stream")
            .expect("stream ended");
        events.push(event);
    }
    events
}

fn is_terminal(e: &pb::JobEvent) -> bool {
    matches!(&e.event, Some(pb::job_event::Event::JobState(s))
        if matches!(pb::JobState::try_from(s.state), Ok(pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled | pb::JobState::PartiallySucceeded)))
}

fn terminal_jobs(events: &[pb::JobEvent]) -> HashSet<String> {
    events
        .iter()
        .filter(|e| is_terminal(e))
        .map(|e| e.job_id.clone())
        .collect()
}

async fn watch_events_streams_every_event_of_the_callers_jobs_and_resumes_without_gaps(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let tenant = app.tenant("stream").await;
    app.member(&tenant, "shop", 20).await;
    app.member(&tenant, "other", 20).await;
    // Subscribed before anything happens: from now on.
    let mut mine = watch_events(
        &app,
        as_account(pb::WatchEventsRequest::default(), &tenant.key, "shop"),
    )
    .await;
    let mut everyone =
        watch_events(&app, bearer(pb::WatchEventsRequest::default(), &tenant.key)).await;

    let mut own_jobs = Vec::new();
    for source in ["/image.jpg", "/small.png", "/error-500"] {
        let job = app
            .submit(&tenant, "shop", transform_job(&[app.sources.url(source)]))
            .await
            .expect("submit");
        own_jobs.push(job.id);
    }
    let foreign = app
        .submit(
            &tenant,
            "other",
            transform_job(&[app.sources.url("/small.png")]),
        )
        .await
        .expect("submit");
    let want: HashSet<String> = own_jobs.iter().cloned().collect();
    let events = read_until(&mut mine, |e| terminal_jobs(e) == want).await;

    assert!(
        events.iter().all(|e| want.contains(&e.job_id)),
        "only the account's jobs"
    );
    // Per job: sequences 1..=n with no gap and no repeat, in order.
    let mut by_job: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &events {
        by_job.entry(&e.job_id).or_default().push(e.sequence);
    }
    for (job, seqs) in &by_job {
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, &expected, "job {job}");
        let job = app
            .jobs
            .clone()
            .get_job(as_account(
                pb::GetJobRequest {
                    job_id: (*job).to_string(),
                },
                &tenant.key,
                "shop",
            ))
            .await
            .expect("get")
            .into_inner();
        assert_eq!(
            job.last_sequence,
            seqs.len() as u64,
            "every stored event was streamed"
        );
    }
    // Cursors only grow.
    let cursors: Vec<(i64, i64)> = events
        .iter()
        .map(|e| {
            let (a, b) = e.cursor.split_once('-').expect("cursor");
            (a.parse().expect("txid"), b.parse().expect("id"))
        })
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");

    // Resuming from the middle yields exactly the rest.
    let k = events.len() / 2;
    let mut resumed = watch_events(
        &app,
        as_account(
            pb::WatchEventsRequest {
                after_cursor: events[k - 1].cursor.clone(),
            },
            &tenant.key,
            "shop",
        ),
    )
    .await;
    let rest = read_until(&mut resumed, |e| e.len() == events.len() - k).await;
    let key = |e: &pb::JobEvent| (e.job_id.clone(), e.sequence, e.cursor.clone());
    assert_eq!(
        rest.iter().map(key).collect::<Vec<_>>(),
        events[k..].iter().map(key).collect::<Vec<_>>()
    );

    // A tenant-wide key without an account sees both accounts.
    let mut all_want = want.clone();
    all_want.insert(foreign.id.clone());
    let all = read_until(&mut everyone, |e| terminal_jobs(e) == all_want).await;
    assert!(all.iter().any(|e| e.job_id == foreign.id));

    let bad = app
        .jobs
        .clone()
        .watch_events(bearer(
            pb::WatchEventsRequest {
                after_cursor: "yesterday".into(),
            },
            &tenant.key,
        ))
        .await
        .expect_err("bad cursor");
    assert_eq!(code_of(&bad), 1003);
}

async fn stats_count_states_kinds_rates_and_durations(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.tenant("stats").await;
    app.member(&tenant, "shop", 20).await;
    let ok_a = app
        .submit(
            &tenant,
            "shop",
            transform_job(&[app.sources.url("/image.jpg")]),
        )
        .await
        .expect("submit");
    let ok_b = app
        .submit(
            &tenant,
            "shop",
            clean_job(
                vec![url_source(&app.sources.url("/small-ok.png"))],
                pb::CleanTemplate::Matting,
            ),
        )
        .await
        .expect("submit");
    let failed = app
        .submit(
            &tenant,
            "shop",
            transform_job(&[app.sources.url("/not-an-image")]),
        )
        .await
        .expect("submit");
    let mut finished = Vec::new();
    for id in [&ok_a.id, &ok_b.id, &failed.id] {
        finished.push(app.finish(&tenant, "shop", id).await);
    }
    assert_eq!(finished[2].state, pb::JobState::Failed as i32);
    let stats = app
        .jobs
        .clone()
        .get_stats(as_account(
            pb::GetStatsRequest::default(),
            &tenant.key,
            "shop",
        ))
        .await
        .expect("stats")
        .into_inner();
    let count = |state: pb::JobState| {
        stats
            .by_state
            .iter()
            .find(|s| s.state == state as i32)
            .map_or(0, |s| s.jobs)
    };
    assert_eq!(count(pb::JobState::Succeeded), 2);
    assert_eq!(count(pb::JobState::Failed), 1);
    let transform = stats
        .by_kind
        .iter()
        .find(|k| k.kind == pb::JobKind::Transform as i32)
        .expect("transform");
    assert_eq!(
        (transform.jobs, transform.succeeded, transform.failed),
        (2, 1, 1)
    );
    let clean = stats
        .by_kind
        .iter()
        .find(|k| k.kind == pb::JobKind::BasicClean as i32)
        .expect("clean");
    assert_eq!((clean.jobs, clean.succeeded, clean.failed), (1, 1, 0));
    assert!(
        (stats.completion_rate - 2.0 / 3.0).abs() < 1e-9,
        "{stats:?}"
    );
    assert!((stats.failure_rate - 1.0 / 3.0).abs() < 1e-9);
    let cached = finished
        .iter()
        .flat_map(|j| &j.tasks)
        .filter(|t| t.from_cache)
        .count() as f64;
    assert!((stats.cache_hit_rate - cached / 2.0).abs() < 1e-9);
    assert!(stats.mean_duration_seconds > 0.0);
    assert!(stats.p95_duration_seconds >= stats.mean_duration_seconds * 0.5);
    let durations: Vec<f64> = finished
        .iter()
        .map(|j| {
            let (f, c) = (
                j.finished_at.expect("finished"),
                j.created_at.expect("created"),
            );
            (f.seconds - c.seconds) as f64 + f64::from(f.nanos - c.nanos) / 1e9
        })
        .collect();
    let max = durations.iter().copied().fold(0.0, f64::max);
    assert!(
        (stats.p95_duration_seconds - max).abs() < 0.002,
        "p95 of 3 is the largest: {stats:?} {durations:?}"
    );

    // A range that holds none of them.
    let later = pb::TimeRange {
        start: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 3600,
            nanos: 0,
        }),
        end: None,
    };
    let empty = app
        .jobs
        .clone()
        .get_stats(as_account(
            pb::GetStatsRequest { range: Some(later) },
            &tenant.key,
            "shop",
        ))
        .await
        .expect("stats")
        .into_inner();
    assert!(empty.by_state.is_empty() && empty.completion_rate == 0.0);
    // Another account of the tenant has its own (empty) numbers.
    app.member(&tenant, "fresh", 0).await;
    let fresh = app
        .jobs
        .clone()
        .get_stats(as_account(
            pb::GetStatsRequest::default(),
            &tenant.key,
            "fresh",
        ))
        .await
        .expect("stats")
        .into_inner();
    assert!(fresh.by_state.is_empty());
}

async fn queued_jobs_learn_their_position(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            c.dispatch_concurrency = 1;
            c.queue_event_seconds = 0.05;
        },
        |_| {},
    )
    .await;
    let tenant = app.tenant("queue").await;
    app.member(&tenant, "shop", 20).await;
    // The only slot is taken by a source that never finishes sending.
    let running = app
        .submit(&tenant, "shop", transform_job(&[app.sources.url("/stall")]))
        .await
        .expect("submit");
    let second = app
        .submit(
            &tenant,
            "shop",
            transform_job(&[app.sources.url("/small.png")]),
        )
        .await
        .expect("submit");
    let third = app
        .submit(
            &tenant,
            "shop",
            transform_job(&[app.sources.url("/small.png")]),
        )
        .await
        .expect("submit");
    let mut stream = app
        .jobs
        .clone()
        .watch_job(as_account(
            pb::WatchJobRequest {
                job_id: third.id.clone(),
                after_sequence: 0,
            },
            &tenant.key,
            "shop",
        ))
        .await
        .expect("watch")
        .into_inner();
    let events = read_until(&mut stream, |e| {
        e.iter()
            .any(|e| matches!(&e.event, Some(pb::job_event::Event::Queue(q)) if q.position == 1))
    })
    .await;
    assert!(events.iter().all(|e| e.job_id == third.id));
    let job = app
        .jobs
        .clone()
        .get_job(as_account(
            pb::GetJobRequest {
                job_id: third.id.clone(),
            },
            &tenant.key,
            "shop",
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(job.state, pb::JobState::Queued as i32);
    assert_eq!(
        job.queue_position, 1,
        "one task (the second job's) is ahead"
    );
    for id in [&running.id, &second.id, &third.id] {
        app.jobs
            .clone()
            .cancel_job(as_account(
                pb::CancelJobRequest { job_id: id.clone() },
                &tenant.key,
                "shop",
            ))
            .await
            .expect("cancel");
    }
}

async fn metrics_are_served_on_their_own_port(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            c.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
            c.queue_event_seconds = 0.05;
        },
        |_| {},
    )
    .await;
    let tenant = app.tenant("metrics").await;
    app.member(&tenant, "shop", 20).await;
    let job = app
        .submit(
            &tenant,
            "shop",
            transform_job(&[app.sources.url("/small-ok.png")]),
        )
        .await
        .expect("submit");
    app.finish(&tenant, "shop", &job.id).await;
    let addr = app.orchestrator.metrics_addr().expect("metrics port");
    let url = format!("http://{addr}/metrics");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = reqwest::get(&url)
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body");
        // The state gauges are refreshed by the observer a moment after the job ends.
        if text.contains("atelier_jobs{state=\"succeeded\"} 1") {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauges never caught up:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for needle in [
        "atelier_jobs_submitted_total{kind=\"transform\"} 1",
        "atelier_task_attempts_total{kind=\"transform\",result=\"succeeded\"} 1",
        "atelier_task_duration_seconds_count{kind=\"transform\"} 1",
        "atelier_tasks{state=\"succeeded\"} 1",
        "atelier_queue_depth 0",
        "# TYPE atelier_cache_hits counter",
        "atelier_webhook_deliveries_total{result=\"delivered\"} 0",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    let missing = reqwest::get(format!("http://{addr}/nothing"))
        .await
        .expect("GET");
    assert_eq!(missing.status(), 404);
}

/// Reads `/metrics` until every line of `lines` is in it.
async fn metrics_with(url: &str, lines: &[&str]) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = reqwest::get(url)
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("body");
        // The observer refreshes the state gauges every 50 ms here.
        if lines.iter().all(|line| text.lines().any(|l| l == *line)) {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "gauges never showed {lines:?}:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn state_gauges_count_the_work_in_flight_and_what_just_ended(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            c.metrics_listen = Some("127.0.0.1:0".parse().expect("addr"));
            c.queue_event_seconds = 0.05;
            // Nothing runs: the jobs stay queued until they are cancelled.
            c.dispatch_concurrency = 0;
        },
        |_| {},
    )
    .await;
    let tenant = app.tenant("gauges").await;
    app.member(&tenant, "shop", 20).await;
    let url = app.sources.url("/small-ok.png");
    let two = app
        .submit(&tenant, "shop", transform_job(&[url.clone(), url.clone()]))
        .await
        .expect("submit");
    app.submit(&tenant, "shop", transform_job(std::slice::from_ref(&url)))
        .await
        .expect("submit");
    let addr = app.orchestrator.metrics_addr().expect("metrics port");
    let metrics = format!("http://{addr}/metrics");
    metrics_with(
        &metrics,
        &[
            "atelier_jobs{state=\"queued\"} 2",
            "atelier_jobs{state=\"running\"} 0",
            "atelier_jobs{state=\"cancelled\"} 0",
            "atelier_tasks{state=\"queued\"} 3",
            "atelier_tasks{state=\"running\"} 0",
            "atelier_tasks{state=\"retry_wait\"} 0",
            "atelier_tasks{state=\"cancelled\"} 0",
            "atelier_queue_depth 3",
        ],
    )
    .await;
    app.jobs
        .clone()
        .cancel_job(as_account(
            pb::CancelJobRequest {
                job_id: two.id.clone(),
            },
            &tenant.key,
            "shop",
        ))
        .await
        .expect("cancel");
    metrics_with(
        &metrics,
        &[
            "atelier_jobs{state=\"queued\"} 1",
            "atelier_jobs{state=\"cancelled\"} 1",
            "atelier_jobs{state=\"succeeded\"} 0",
            "atelier_tasks{state=\"queued\"} 1",
            "atelier_tasks{state=\"cancelled\"} 2",
            "atelier_queue_depth 1",
        ],
    )
    .await;
}

async fn job_logs_hold_lines_of_both_services_in_pages(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.retry_base_seconds = 0.05, |_| {}).await;
    let tenant = app.tenant("logs").await;
    app.member(&tenant, "shop", 5).await;
    // The source answers 500 once: one failed attempt, then success.
    let job = app
        .submit(
            &tenant,
            "shop",
            transform_job(&[app.sources.url("/flaky/1/logs.jpg")]),
        )
        .await
        .expect("submit");
    let job = app.finish(&tenant, "shop", &job.id).await;
    assert_eq!(job.state(), pb::JobState::Succeeded);
    let mut lines = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .jobs
            .clone()
            .list_job_logs(as_account(
                pb::ListJobLogsRequest {
                    job_id: job.id.clone(),
                    page_size: 2,
                    page_token: token,
                },
                &tenant.key,
                "shop",
            ))
            .await
            .expect("logs")
            .into_inner();
        assert!(page.entries.len() <= 2);
        lines.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert!(
        lines.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "in order, no repeats"
    );
    let text = |origin: &str| -> Vec<String> {
        lines
            .iter()
            .filter_map(|e| e.line.as_ref())
            .filter(|l| l.origin == origin)
            .map(|l| l.message.clone())
            .collect()
    };
    let orchestrator = text("orchestrator");
    assert!(
        orchestrator
            .iter()
            .any(|m| m.contains("attempt 1 failed with 3002") && m.contains("retrying")),
        "{orchestrator:#?}"
    );
    assert!(
        orchestrator
            .iter()
            .any(|m| m.starts_with("attempt 2 succeeded with 1 outputs")),
        "{orchestrator:#?}"
    );
    assert!(
        orchestrator.iter().any(|m| m.contains("source jpeg")),
        "{orchestrator:#?}"
    );
    let processor = text("processor");
    assert!(
        !processor.is_empty(),
        "the processor's own lines are kept: {lines:#?}"
    );
    let bad = app
        .jobs
        .clone()
        .list_job_logs(as_account(
            pb::ListJobLogsRequest {
                job_id: job.id.clone(),
                page_size: 2,
                page_token: "x".into(),
            },
            &tenant.key,
            "shop",
        ))
        .await
        .expect_err("bad token");
    assert_eq!(code_of(&bad), 1003);
}

on_both_databases!(
    job_logs_hold_lines_of_both_services_in_pages,
    watch_events_streams_every_event_of_the_callers_jobs_and_resumes_without_gaps,
    stats_count_states_kinds_rates_and_durations,
    queued_jobs_learn_their_position,
    metrics_are_served_on_their_own_port,
    state_gauges_count_the_work_in_flight_and_what_just_ended,
);
