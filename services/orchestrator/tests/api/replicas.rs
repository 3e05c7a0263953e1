//! Several replicas on one PostgreSQL: events and cancellations reach every replica.

use std::time::Duration;

use atelier_proto::v1 as pb;
use atelier_proto::v1::job_service_client::JobServiceClient;
use tonic::transport::Channel;

use crate::helpers::{as_account, spawn_app_with, transform_job, Backend, ADMIN, SERVICE};

/// A second replica on the same database and storage that only serves the API.
async fn api_only_replica(
    database_url: &str,
    storage: &str,
    processor: String,
) -> (
    atelier_orchestrator::RunningOrchestrator,
    JobServiceClient<Channel>,
) {
    let mut config = atelier_orchestrator::Config::new(database_url, storage, vec![processor]);
    config.admin_token = ADMIN.into();
    config.service_token = SERVICE.into();
    config.dispatch_concurrency = 0;
    let replica = atelier_orchestrator::spawn(config)
        .await
        .expect("replica starts");
    let channel = Channel::from_shared(replica.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    (replica, JobServiceClient::new(channel))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watcher_on_one_replica_follows_a_job_another_runs_and_cancels_reach_it() {
    // Long leases: a cancel that reached the running replica only through lease renewal would take 20 s.
    let app = spawn_app_with(Backend::Postgres, |c| c.lease_seconds = 60.0, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let storage = app.objects.clone();
    let (_replica, mut jobs_b) =
        api_only_replica(&app.database_url, &storage, app.processor.url()).await;

    // Two different images, so that neither task is served from the other's cache entry.
    let urls = vec![
        app.sources.url("/image.jpg"),
        app.sources.url("/small-ok.png"),
    ];
    let job = jobs_b
        .submit_job(as_account(transform_job(&urls), &t.key, "alice"))
        .await
        .expect("submit on B")
        .into_inner();
    let mut stream = jobs_b
        .watch_job(as_account(
            pb::WatchJobRequest {
                job_id: job.id.clone(),
                after_sequence: 0,
            },
            &t.key,
            "alice",
        ))
        .await
        .expect("watch on B")
        .into_inner();
    let mut sequences = Vec::new();
    let mut last = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("in time")
        .expect("stream")
    {
        // Live events (queue positions) are not in the stored log.
        if event.cursor.is_empty() {
            continue;
        }
        sequences.push(event.sequence);
        last = Some(event);
    }
    assert_eq!(
        sequences,
        (1..=sequences.len() as u64).collect::<Vec<_>>(),
        "no gaps or duplicates across replicas"
    );
    match last.and_then(|e| e.event) {
        Some(pb::job_event::Event::JobState(s)) => assert_eq!(s.state(), pb::JobState::Succeeded),
        other => panic!("ends with the terminal state: {other:?}"),
    }

    // Cancelled on B while A runs it: A drops the processor stream well before its next lease renewal.
    let stalled = jobs_b
        .submit_job(as_account(
            transform_job(&[app.sources.url("/stall")]),
            &t.key,
            "alice",
        ))
        .await
        .expect("submit")
        .into_inner();
    app.sources
        .wait_for(atelier_testkit::Seen::Request("/stall".into()))
        .await;
    let cancelled = jobs_b
        .cancel_job(as_account(
            pb::CancelJobRequest { job_id: stalled.id },
            &t.key,
            "alice",
        ))
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.state(), pb::JobState::Cancelled);
    // Well under the download timeout: the running replica stopped the attempt after the cancel
    // notification, not the download's own timeout.
    app.sources
        .wait_for_within(
            atelier_testkit::Seen::Closed("/stall".into()),
            atelier_testkit::source::CANCEL_LIMIT,
        )
        .await;
    assert_eq!(app.account(&t, "alice").await.balance, 5 - 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_and_two_processors_complete_five_hundred_tasks_exactly_once() {
    let app = spawn_app_with(Backend::Postgres, |c| c.max_active_jobs = 10, |_| {}).await;
    let second = atelier_processor::spawn({
        let mut p = atelier_processor::Config::new(SERVICE, app.objects.clone());
        p.allow_private_sources = vec!["127.0.0.1/32".parse().expect("cidr")];
        p
    })
    .await
    .expect("second processor");
    let processors = vec![app.processor.url(), second.url()];
    let mut replicas = Vec::new();
    for _ in 0..2 {
        let mut config = atelier_orchestrator::Config::new(
            app.database_url.clone(),
            app.objects.clone(),
            processors.clone(),
        );
        config.admin_token = ADMIN.into();
        config.service_token = SERVICE.into();
        config.poll_seconds = 0.05;
        replicas.push(atelier_orchestrator::spawn(config).await.expect("replica"));
    }
    let t = app.tenant("shop").await;
    app.member(&t, "bulk", 500).await;
    let urls: Vec<String> = (0..100).map(|_| app.sources.url("/small-ok.png")).collect();
    let mut ids = Vec::new();
    let mut cached = 0;
    for _ in 0..5 {
        ids.push(
            app.submit(&t, "bulk", transform_job(&urls))
                .await
                .expect("submit")
                .id,
        );
    }
    for id in &ids {
        let events = app.watch_to_end(&t, "bulk", id, 0).await;
        let mut succeeded = std::collections::HashMap::new();
        for event in &events {
            if let Some(pb::job_event::Event::TaskState(s)) = &event.event {
                if s.state() == pb::TaskState::Succeeded {
                    *succeeded.entry(s.task_id.clone()).or_insert(0) += 1;
                }
            }
        }
        assert_eq!(succeeded.len(), 100);
        assert!(
            succeeded.values().all(|n| *n == 1),
            "each task completed exactly once"
        );
        let job = app
            .jobs
            .clone()
            .get_job(as_account(
                pb::GetJobRequest { job_id: id.clone() },
                &t.key,
                "bulk",
            ))
            .await
            .expect("get")
            .into_inner();
        assert_eq!(job.state(), pb::JobState::Succeeded);
        assert!(job
            .tasks
            .iter()
            .all(|task| task.attempts == 1 && task.outputs.len() == 1));
        cached += job.tasks.iter().filter(|task| task.from_cache).count() as i64;
    }
    // The same image 500 times: tasks served from the content cache are refunded, the rest paid.
    assert_eq!(app.account(&t, "bulk").await.balance, cached);
    assert_eq!(app.ledger_sum(&t, "bulk").await, cached);
}

/// The next event of a watch, skipping live queue positions (the observer may send one any time).
async fn next_not_queue(stream: &mut tonic::Streaming<pb::JobEvent>) -> pb::JobEvent {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("an event in time")
            .expect("stream")
            .expect("the stream is open");
        if !matches!(event.event, Some(pb::job_event::Event::Queue(_))) {
            return event;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_event_announced_anywhere_reaches_the_watchers_of_its_job_and_is_never_stored() {
    // Nothing runs: the job stays queued until it is cancelled.
    let app = spawn_app_with(Backend::Postgres, |c| c.dispatch_concurrency = 0, |_| {}).await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let (_replica, mut jobs_b) =
        api_only_replica(&app.database_url, &app.objects, app.processor.url()).await;
    let job = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("submit");
    let other = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("submit");
    let watch = |job_id: String| {
        as_account(
            pb::WatchJobRequest {
                job_id,
                after_sequence: 0,
            },
            &t.key,
            "alice",
        )
    };
    let mut stream = jobs_b
        .watch_job(watch(job.id.clone()))
        .await
        .expect("watch on B")
        .into_inner();
    let mut other_stream = jobs_b
        .watch_job(watch(other.id.clone()))
        .await
        .expect("watch on B")
        .into_inner();
    // The replay, then the live position of a queued job: the stream follows the job live.
    let mut last_stored = 0;
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("in time")
            .expect("stream")
            .expect("open");
        if matches!(event.event, Some(pb::job_event::Event::Queue(_))) {
            assert_eq!(
                event.sequence, last_stored,
                "a live event carries the last sequence sent"
            );
            break;
        }
        last_stored = event.sequence;
    }
    assert!(last_stored >= 1, "the stored log was replayed first");

    // Announced through PostgreSQL from outside any replica: the listener of B hands it to B's
    // watchers of that job.
    let db = atelier_orchestrator::db::connect(&app.database_url)
        .await
        .expect("database");
    let progress = pb::JobEvent {
        job_id: job.id.clone(),
        event: Some(pb::job_event::Event::Progress(pb::TaskProgress {
            task_id: "task-live".into(),
            stage: "resizing".into(),
            percent: 42,
        })),
        ..Default::default()
    };
    let announced = atelier_orchestrator::db::events::announce_live(&db, &progress)
        .await
        .expect("announce");
    assert!(announced, "PostgreSQL announces live events");
    let event = next_not_queue(&mut stream).await;
    assert_eq!(event.job_id, job.id);
    assert_eq!(event.sequence, last_stored);
    assert!(
        event.cursor.is_empty(),
        "a live event has no place in the stored log"
    );
    match event.event {
        Some(pb::job_event::Event::Progress(p)) => {
            assert_eq!((p.stage.as_str(), p.percent), ("resizing", 42));
        }
        other => panic!("the live progress: {other:?}"),
    }

    // The stream goes on after a live event: the cancellation is stored, with the next sequence, and
    // ends it. The other job's watcher never saw the progress.
    app.jobs
        .clone()
        .cancel_job(as_account(
            pb::CancelJobRequest {
                job_id: job.id.clone(),
            },
            &t.key,
            "alice",
        ))
        .await
        .expect("cancel");
    let mut stored = Vec::new();
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), stream.message())
        .await
        .expect("in time")
        .expect("stream")
    {
        if !event.cursor.is_empty() {
            stored.push(event.sequence);
        }
    }
    assert_eq!(
        stored.first(),
        Some(&(last_stored + 1)),
        "no stored event is lost or repeated around a live one"
    );
    let replayed = jobs_b
        .watch_job(watch(job.id.clone()))
        .await
        .expect("watch again")
        .into_inner();
    let replayed: Vec<pb::JobEvent> = tokio::time::timeout(
        Duration::from_secs(60),
        futures::TryStreamExt::try_collect(replayed),
    )
    .await
    .expect("in time")
    .expect("replay");
    assert!(
        replayed.iter().all(|e| !matches!(
            e.event,
            Some(pb::job_event::Event::Progress(_) | pb::job_event::Event::Queue(_))
        )),
        "live events are never stored: {replayed:?}"
    );
    app.jobs
        .clone()
        .cancel_job(as_account(
            pb::CancelJobRequest {
                job_id: other.id.clone(),
            },
            &t.key,
            "alice",
        ))
        .await
        .expect("cancel");
    while let Some(event) = tokio::time::timeout(Duration::from_secs(60), other_stream.message())
        .await
        .expect("in time")
        .expect("stream")
    {
        assert!(
            !matches!(event.event, Some(pb::job_event::Event::Progress(_))),
            "a live event of one job reached the watcher of another"
        );
    }
}
