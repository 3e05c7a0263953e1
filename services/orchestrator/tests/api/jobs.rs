//! Jobs end to end through the real processor.

use atelier_proto::v1 as pb;

use crate::helpers::{
    self, as_account, clean_job, code_of, images, spawn_app, transform_job, upload_source,
    url_source, Backend,
};
use crate::on_both_databases;

on_both_databases!(
    basic_clean_all_from_an_upload_and_transform_from_a_url,
    a_batch_with_every_bad_file_ends_partially_succeeded,
    listing_pages_newest_first_with_filters,
    cancelling_a_running_job_refunds_once_and_stops_the_processor,
    idempotency_keys_replay_or_conflict,
    uploads_are_capped_while_streaming_and_sniffed,
    an_empty_file_is_not_an_image_uploaded_or_fetched,
);

async fn basic_clean_all_from_an_upload_and_transform_from_a_url(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 10).await;

    let upload = app
        .upload(&t, "alice", images::jpeg())
        .await
        .expect("upload");
    assert_eq!(upload.bytes as usize, images::jpeg().len());
    let job = app
        .submit(
            &t,
            "alice",
            clean_job(vec![upload_source(&upload.id)], pb::CleanTemplate::All),
        )
        .await
        .expect("submit");
    assert_eq!(job.state(), pb::JobState::Queued);
    assert_eq!(job.cost, 1);

    let events = app.watch_to_end(&t, "alice", &job.id, 0).await;
    let progress = events
        .iter()
        .filter(|e| matches!(e.event, Some(pb::job_event::Event::Progress(_))))
        .count();
    assert!(progress > 0, "live progress reaches watchers");
    let done = app.finish(&t, "alice", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    let task = &done.tasks[0];
    assert_eq!(task.attempts, 1);
    let names: Vec<&str> = task.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["matting.png", "white-bg.jpg", "enhanced.jpg"]);
    for output in &task.outputs {
        let bytes = app
            .storage
            .get(&output.key, 64 << 20)
            .await
            .expect("output stored");
        assert_eq!(bytes.len() as u64, output.bytes);
        let thumb = output.thumbnail.as_ref().expect("thumbnail");
        assert!(thumb.width.max(thumb.height) <= 256);
        app.storage
            .get(&thumb.key, 1 << 20)
            .await
            .expect("thumbnail stored");
    }
    let matting = helpers::images::decode(
        &app.storage
            .get(&task.outputs[0].key, 64 << 20)
            .await
            .expect("matting"),
    );
    assert!(
        matting.color().has_alpha(),
        "matting.png keeps transparency"
    );
    let info = task.source_info.as_ref().expect("source info recorded");
    assert_eq!(info.format(), pb::ImageFormat::Jpeg);
    assert_eq!((info.width, info.height), (640, 480));

    let job = app
        .submit(&t, "alice", transform_job(&[app.sources.url("/image.jpg")]))
        .await
        .expect("submit transform");
    let done = app.finish(&t, "alice", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    let out = &done.tasks[0].outputs[0];
    assert_eq!((out.width, out.content_type.as_str()), (320, "image/webp"));
    assert_eq!(app.account(&t, "alice").await.balance, 8);
    assert_eq!(app.ledger_sum(&t, "alice").await, 8);
}

async fn a_batch_with_every_bad_file_ends_partially_succeeded(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "bob", 20).await;
    let cases = [
        ("/image.jpg", None),
        ("/not-an-image", Some(3003)),
        ("/small.png", Some(3004)),
        ("/too-large", Some(3008)),
        ("/truncated.jpg", Some(3017)),
        ("/huge-header.png", Some(3004)),
        ("/missing", Some(3002)),
    ];
    let urls: Vec<String> = cases.iter().map(|(p, _)| app.sources.url(p)).collect();
    let job = app
        .submit(&t, "bob", transform_job(&urls))
        .await
        .expect("submit");
    assert_eq!(job.cost, 7);
    let done = app.finish(&t, "bob", &job.id).await;
    assert_eq!(done.state(), pb::JobState::PartiallySucceeded);
    for ((path, code), task) in cases.iter().zip(&done.tasks) {
        match code {
            None => assert_eq!(task.state(), pb::TaskState::Succeeded, "{path}"),
            Some(code) => {
                assert_eq!(task.state(), pb::TaskState::Failed, "{path}");
                let failure = task.failure.as_ref().expect("failure recorded");
                assert_eq!(failure.code, *code, "{path}: {}", failure.message);
                assert_eq!(task.attempts, 1, "{path} is not retried");
                assert!(!failure.message.is_empty());
            }
        }
    }
    assert_eq!(done.refunded, 6);
    assert_eq!(app.account(&t, "bob").await.balance, 20 - 1);
    assert_eq!(app.ledger_sum(&t, "bob").await, 19);
}

async fn listing_pages_newest_first_with_filters(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "carol", 10).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut req = transform_job(&[app.sources.url("/image.jpg")]);
        req.labels.insert(
            "batch".into(),
            if i % 2 == 0 { "even" } else { "odd" }.into(),
        );
        let job = app.submit(&t, "carol", req).await.expect("submit");
        app.finish(&t, "carol", &job.id).await;
        ids.push(job.id);
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .jobs
            .clone()
            .list_jobs(as_account(
                pb::ListJobsRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                },
                &t.key,
                "carol",
            ))
            .await
            .expect("list")
            .into_inner();
        assert!(page.jobs.len() <= 2);
        seen.extend(page.jobs.into_iter().map(|j| j.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");

    let even = app
        .jobs
        .clone()
        .list_jobs(as_account(
            pb::ListJobsRequest {
                label: "batch=even".into(),
                ..Default::default()
            },
            &t.key,
            "carol",
        ))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(even.jobs.len(), 3);
    let by_state = app
        .jobs
        .clone()
        .list_jobs(as_account(
            pb::ListJobsRequest {
                state: pb::JobState::Failed as i32,
                kind: pb::JobKind::Transform as i32,
                ..Default::default()
            },
            &t.key,
            "carol",
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(by_state.jobs.is_empty());
    let err = app
        .jobs
        .clone()
        .list_jobs(as_account(
            pb::ListJobsRequest {
                page_size: 101,
                ..Default::default()
            },
            &t.key,
            "carol",
        ))
        .await
        .expect_err("page too large");
    assert_eq!(code_of(&err), 1003);
    let err = app
        .jobs
        .clone()
        .list_jobs(as_account(
            pb::ListJobsRequest {
                page_token: "garbage!".into(),
                ..Default::default()
            },
            &t.key,
            "carol",
        ))
        .await
        .expect_err("bad token");
    assert_eq!(code_of(&err), 1003);
}

async fn cancelling_a_running_job_refunds_once_and_stops_the_processor(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "dan", 5).await;
    let job = app
        .submit(&t, "dan", transform_job(&[app.sources.url("/stall")]))
        .await
        .expect("submit");
    // The processor is downloading the stalled source: the task is running.
    app.sources
        .wait_for(atelier_testkit::Seen::Request("/stall".into()))
        .await;
    let cancelled = app
        .jobs
        .clone()
        .cancel_job(as_account(
            pb::CancelJobRequest {
                job_id: job.id.clone(),
            },
            &t.key,
            "dan",
        ))
        .await
        .expect("cancel")
        .into_inner();
    assert_eq!(cancelled.state(), pb::JobState::Cancelled);
    assert_eq!(cancelled.tasks[0].state(), pb::TaskState::Cancelled);
    // The orchestrator dropped the processor stream, so the download is abandoned at once (the
    // contract says within 1 s; the bound here leaves room for a loaded test machine).
    app.sources
        .wait_for_within(
            atelier_testkit::Seen::Closed("/stall".into()),
            atelier_testkit::source::CANCEL_LIMIT,
        )
        .await;
    // Nothing of the attempt reached storage.
    let attempt_prefix = format!("t/{}/jobs/{}/{}/1", t.id, job.id, cancelled.tasks[0].id);
    for name in ["image.webp", "thumbs/image.png", "thumbs/image.jpg"] {
        let key = format!("{attempt_prefix}/{name}");
        assert!(
            !app.storage.exists(&key).await.expect("exists"),
            "{name} uploaded after cancel"
        );
    }
    let again = app
        .jobs
        .clone()
        .cancel_job(as_account(
            pb::CancelJobRequest {
                job_id: job.id.clone(),
            },
            &t.key,
            "dan",
        ))
        .await
        .expect("cancel again")
        .into_inner();
    assert_eq!(again.state(), pb::JobState::Cancelled);
    assert_eq!(
        again.updated_at, cancelled.updated_at,
        "a terminal job is returned unchanged"
    );
    assert_eq!(again.refunded, 1);
    assert_eq!(app.account(&t, "dan").await.balance, 5);
    assert_eq!(app.ledger_sum(&t, "dan").await, 5);
    let prefix_outputs = cancelled.tasks[0].outputs.len();
    assert_eq!(prefix_outputs, 0, "nothing recorded for a cancelled task");
}

async fn idempotency_keys_replay_or_conflict(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "erin", 5).await;
    let mut req = transform_job(&[app.sources.url("/image.jpg")]);
    req.idempotency_key = "order-42".into();
    let first = app.submit(&t, "erin", req.clone()).await.expect("first");
    let second = app.submit(&t, "erin", req.clone()).await.expect("replay");
    assert_eq!(first.id, second.id);
    assert_eq!(app.account(&t, "erin").await.balance, 4, "charged once");
    req.sources.push(url_source(&app.sources.url("/image.jpg")));
    let err = app
        .submit(&t, "erin", req)
        .await
        .expect_err("different request, same key");
    assert_eq!(code_of(&err), 1005);
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert_eq!(app.account(&t, "erin").await.balance, 4);
    assert_eq!(app.ledger_sum(&t, "erin").await, 4);
}

async fn uploads_are_capped_while_streaming_and_sniffed(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "fay", 5).await;
    let mut big = images::jpeg();
    big.resize(10 * 1024 * 1024 + 1, 0);
    let err = app.upload(&t, "fay", big).await.expect_err("over 10 MiB");
    assert_eq!(code_of(&err), 3008);
    let err = app
        .upload(&t, "fay", b"plain text, not an image".to_vec())
        .await
        .expect_err("not an image");
    assert_eq!(code_of(&err), 3003);
    // A stream that ends short of its announced size (a client that went away) stores nothing.
    let jpeg = images::jpeg();
    let announced = jpeg.len() as u64;
    let short = jpeg[..jpeg.len() / 2].to_vec();
    let err = app
        .upload_announcing(&t, "fay", short, announced)
        .await
        .expect_err("cut short");
    assert_eq!(code_of(&err), 1003);
    let uploads = std::path::Path::new(&app.objects).join(format!("t/{}/uploads", t.id));
    assert!(
        !uploads.exists() || std::fs::read_dir(&uploads).expect("dir").next().is_none(),
        "no partial upload in storage"
    );
    let err = app
        .upload_announcing(&t, "fay", images::jpeg(), 11 * 1024 * 1024)
        .await
        .expect_err("announced over the cap");
    assert_eq!(code_of(&err), 3008);
    app.upload_announcing(&t, "fay", images::jpeg(), 0)
        .await
        .expect("without an announced size the stream's end decides");
    // An upload id of another tenant is unknown here.
    let other = app.tenant("other").await;
    app.member(&other, "fay", 5).await;
    let theirs = app
        .upload(&other, "fay", images::jpeg())
        .await
        .expect("upload");
    let err = app
        .submit(
            &t,
            "fay",
            clean_job(vec![upload_source(&theirs.id)], pb::CleanTemplate::WhiteBg),
        )
        .await
        .expect_err("foreign upload");
    assert_eq!(code_of(&err), 1003);
    assert_eq!(
        app.account(&t, "fay").await.balance,
        5,
        "nothing charged for a refused submit"
    );
}

on_both_databases!(a_busy_real_photo_fails_matting_uncertain_once_and_is_refunded);

/// A real photo (a coffee cup on a wooden table) under the classical method: the task fails with
/// 3010 at its first attempt (no retry: another try would say the same), and the unit comes back.
async fn a_busy_real_photo_fails_matting_uncertain_once_and_is_refunded(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "cleo", 5).await;
    let photo = atelier_testkit::images::real_photo("coffee.png");
    let upload = app.upload(&t, "cleo", photo).await.expect("upload");
    let job = app
        .submit(
            &t,
            "cleo",
            clean_job(vec![upload_source(&upload.id)], pb::CleanTemplate::All),
        )
        .await
        .expect("submit");
    assert_eq!(
        app.account(&t, "cleo").await.balance,
        4,
        "charged at submit"
    );
    let done = app.finish(&t, "cleo", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Failed, "{done:?}");
    let task = &done.tasks[0];
    let failure = task.failure.as_ref().expect("failure");
    assert_eq!(
        (failure.code, failure.reason.as_str()),
        (3010, "MATTING_UNCERTAIN")
    );
    assert!(
        failure.message.contains("--matting-model"),
        "{}",
        failure.message
    );
    assert_eq!(task.attempts, 1, "not retried");
    assert!(task.outputs.is_empty());
    assert_eq!(done.refunded, 1);
    assert_eq!(app.account(&t, "cleo").await.balance, 5);
    assert_eq!(app.ledger_sum(&t, "cleo").await, 5);
}

/// The same zero bytes answer the same code whichever way they arrive: 3003 UNSUPPORTED_FORMAT.
async fn an_empty_file_is_not_an_image_uploaded_or_fetched(backend: Backend) {
    let app = spawn_app(backend).await;
    let t = app.tenant("shop").await;
    app.member(&t, "gil", 5).await;
    let err = app
        .upload(&t, "gil", Vec::new())
        .await
        .expect_err("an empty upload");
    assert_eq!(
        (err.code(), code_of(&err)),
        (tonic::Code::InvalidArgument, 3003),
        "{err:?}"
    );
    assert!(err.message().contains("empty"), "{}", err.message());
    let uploads = std::path::Path::new(&app.objects).join(format!("t/{}/uploads", t.id));
    assert!(!uploads.exists(), "nothing stored for an empty upload");

    let job = app
        .submit(&t, "gil", transform_job(&[app.sources.url("/empty.jpg")]))
        .await
        .expect("submit");
    let done = app.finish(&t, "gil", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Failed, "{done:?}");
    let failure = done.tasks[0].failure.as_ref().expect("failure recorded");
    assert_eq!(failure.code, 3003, "{}", failure.message);
    assert_eq!(done.tasks[0].attempts, 1, "not retried");
    assert_eq!(app.account(&t, "gil").await.balance, 5, "refunded");
    assert_eq!(app.ledger_sum(&t, "gil").await, 5);
}
