//! The server's own limits, as layers around every call: a deadline for unary calls that streams do
//! not have, and a bound on the calls served at once.

use std::time::{Duration, Instant};

use atelier_proto::v1 as pb;
use atelier_testkit::source::Seen;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::helpers::{
    as_account, code_of, images, spawn_app_with, transform_job, Backend, Tenant, TestApp, SERVICE,
};
use crate::on_both_databases;

on_both_databases!(
    unary_calls_are_cut_at_the_request_timeout_and_streams_are_not,
    calls_beyond_the_concurrency_limit_wait_for_a_slot
);

/// A report as the worker of `alice`, with the service token.
fn report(
    t: &Tenant,
    task_id: &str,
    state: pb::ReportedState,
    urls: &[String],
) -> tonic::Request<pb::ReportTaskRequest> {
    let mut request = as_account(
        pb::ReportTaskRequest {
            task_id: task_id.into(),
            state: state as i32,
            result_urls: urls.to_vec(),
            error_message: String::new(),
        },
        &t.key,
        "alice",
    );
    request
        .metadata_mut()
        .insert("x-api-key", SERVICE.parse().expect("ascii"));
    request
}

/// A queued job of `alice` on a replica that runs no attempts, its task taken by an outside worker.
async fn taken_task(app: &TestApp) -> (Tenant, pb::Job) {
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let job = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("submit");
    app.jobs
        .clone()
        .report_task(report(
            &t,
            &job.tasks[0].id,
            pb::ReportedState::Processing,
            &[],
        ))
        .await
        .expect("taken");
    (t, job)
}

async fn unary_calls_are_cut_at_the_request_timeout_and_streams_are_not(backend: Backend) {
    let limit = Duration::from_secs(1);
    let app = spawn_app_with(
        backend,
        |c| {
            c.dispatch_concurrency = 0;
            c.request_timeout_seconds = limit.as_secs_f64();
        },
        |_| {},
    )
    .await;
    let (t, job) = taken_task(&app).await;

    // A watch and an upload, opened before the slow call and still open after it.
    let mut watch = app
        .jobs
        .clone()
        .watch_job(as_account(
            pb::WatchJobRequest {
                job_id: job.id.clone(),
                after_sequence: 0,
            },
            &t.key,
            "alice",
        ))
        .await
        .expect("watch")
        .into_inner();
    let (parts, received) = mpsc::channel(4);
    parts
        .send(pb::UploadSourceRequest {
            part: Some(pb::upload_source_request::Part::Metadata(
                pb::UploadMetadata {
                    filename: "photo.jpg".into(),
                    content_type: String::new(),
                    size: 0,
                },
            )),
        })
        .await
        .expect("metadata part");
    let upload = tokio::spawn({
        let mut jobs = app.jobs.clone();
        let request = as_account(ReceiverStream::new(received), &t.key, "alice");
        async move { jobs.upload_source(request).await }
    });

    // Importing the result waits on a held source: the call is cut at the limit, well before the
    // processor's own download timeout (5 s).
    let started = Instant::now();
    let err = app
        .jobs
        .clone()
        .report_task(report(
            &t,
            &job.tasks[0].id,
            pb::ReportedState::Succeeded,
            &[app.sources.url("/held/result")],
        ))
        .await
        .expect_err("cut");
    let took = started.elapsed();
    assert_eq!(
        (err.code(), code_of(&err)),
        (tonic::Code::DeadlineExceeded, 1007),
        "{err:?}"
    );
    assert!(
        err.message().contains("limit of 1 seconds"),
        "{}",
        err.message()
    );
    assert!(took >= limit && took < Duration::from_secs(5), "{took:?}");

    // The upload, open for longer than the limit by now, finishes.
    let image = images::jpeg();
    parts
        .send(pb::UploadSourceRequest {
            part: Some(pb::upload_source_request::Part::Chunk(image.clone())),
        })
        .await
        .expect("chunk");
    drop(parts);
    let uploaded = upload
        .await
        .expect("upload task")
        .expect("an upload is not cut")
        .into_inner();
    assert_eq!(uploaded.bytes, image.len() as u64);

    // So does the watch: it sees the job cancelled, then ends.
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
    let mut last = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("the watch goes on")
        .expect("a watch is not cut")
    {
        last = Some(event);
    }
    match last.and_then(|e| e.event) {
        Some(pb::job_event::Event::JobState(s)) => {
            assert_eq!(s.state(), pb::JobState::Cancelled)
        }
        other => panic!("the watch ended with {other:?}"),
    }
    app.sources.release_held();
}

async fn calls_beyond_the_concurrency_limit_wait_for_a_slot(backend: Backend) {
    let app = spawn_app_with(
        backend,
        |c| {
            c.dispatch_concurrency = 0;
            c.max_concurrent_requests = 1;
        },
        |_| {},
    )
    .await;
    let (t, job) = taken_task(&app).await;

    // The only slot is held by a report whose result waits on a held source.
    let reported = tokio::spawn({
        let mut jobs = app.jobs.clone();
        let request = report(
            &t,
            &job.tasks[0].id,
            pb::ReportedState::Succeeded,
            &[app.sources.url("/held/result")],
        );
        async move { jobs.report_task(request).await }
    });
    app.sources
        .wait_for(Seen::Request("/held/result".into()))
        .await;

    // Another call waits for it rather than running beside it...
    let mut jobs = app.jobs.clone();
    let get = jobs.get_job(as_account(
        pb::GetJobRequest {
            job_id: job.id.clone(),
        },
        &t.key,
        "alice",
    ));
    tokio::pin!(get);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), &mut get)
            .await
            .is_err(),
        "a second call ran while the only slot was taken"
    );

    // ...and runs once the slot frees, after the report it waited for.
    app.sources.release_held();
    let task = reported
        .await
        .expect("report task")
        .expect("reported")
        .into_inner();
    assert_eq!(task.state(), pb::TaskState::Succeeded);
    let seen = get.await.expect("get job").into_inner();
    assert_eq!(seen.tasks[0].state(), pb::TaskState::Succeeded);
}
