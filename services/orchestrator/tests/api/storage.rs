//! The pair on a real S3-compatible server: uploads written by the orchestrator, read and written by
//! the processor.

use atelier_proto::v1 as pb;
use atelier_storage::testing::S3Server;
use atelier_storage::Storage;

use crate::helpers::{clean_job, images, spawn_app_with, upload_source, Backend};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_and_outputs_live_in_the_bucket() {
    let s3 = S3Server::start().await;
    let options = s3.options();
    let location = s3.location();
    let (o_location, o_options, p_location, p_options) = (
        location.clone(),
        options.clone(),
        location.clone(),
        options.clone(),
    );
    let app = spawn_app_with(
        Backend::Sqlite,
        move |c| {
            c.storage = o_location;
            c.s3_endpoint = o_options.endpoint;
            c.s3_region = o_options.region;
            c.s3_path_style = o_options.path_style;
            c.s3_access_key_id = o_options.access_key_id;
            c.s3_secret_access_key = o_options.secret_access_key;
        },
        move |p| {
            p.storage = p_location;
            p.s3_endpoint = p_options.endpoint;
            p.s3_region = p_options.region;
            p.s3_path_style = p_options.path_style;
            p.s3_access_key_id = p_options.access_key_id;
            p.s3_secret_access_key = p_options.secret_access_key;
        },
    )
    .await;
    let bucket = Storage::open(&location, &options).await.expect("bucket");
    let t = app.tenant("shop").await;
    app.member(&t, "alice", 5).await;
    let upload = app
        .upload(&t, "alice", images::jpeg())
        .await
        .expect("upload");
    let job = app
        .submit(
            &t,
            "alice",
            clean_job(vec![upload_source(&upload.id)], pb::CleanTemplate::Matting),
        )
        .await
        .expect("submit");
    let done = app.finish(&t, "alice", &job.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    let output = &done.tasks[0].outputs[0];
    assert_eq!(output.name, "matting.png");
    assert!(output.url.starts_with("s3://"), "{}", output.url);
    let stored = bucket
        .get(&output.key, 64 << 20)
        .await
        .expect("output in the bucket");
    assert_eq!(stored.len() as u64, output.bytes);
    let thumb = output.thumbnail.as_ref().expect("thumbnail");
    assert!(bucket.exists(&thumb.key).await.expect("exists"));
    assert!(
        !app.storage.exists(&output.key).await.expect("local check"),
        "nothing went to the local folder"
    );
}
