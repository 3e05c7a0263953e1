//! Sources from object storage, and a full transform against a real S3-compatible server.

use atelier_codes::ErrorCode;
use atelier_proto::v1;
use atelier_storage::testing::S3Server;
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::helpers::{images, request, spawn_app, spawn_app_on_s3, transform};

fn object(key: &str) -> v1::source_ref::Source {
    v1::source_ref::Source::ObjectKey(key.into())
}

#[tokio::test]
async fn a_source_by_object_key_is_read_from_storage() {
    let app = spawn_app().await;
    app.storage
        .put(
            "uploads/u1/source.jpg",
            Bytes::from(images::jpeg()),
            "image/jpeg",
        )
        .await
        .expect("put source");
    let req = request(
        transform(Default::default()),
        object("uploads/u1/source.jpg"),
        "jobs/job-1/task-1",
    );
    let (events, outputs) = app.run_ok(req).await;
    assert!(events
        .iter()
        .any(|e| matches!(e, v1::process_event::Event::SourceFetched(s) if s.width == 640)));
    assert_eq!(outputs.len(), 1);
    let stored = app
        .storage
        .get(&outputs[0].key, u64::MAX)
        .await
        .expect("output stored");
    assert_eq!(hex::encode(Sha256::digest(&stored)), outputs[0].sha256);
}

#[tokio::test]
async fn a_missing_object_is_a_download_failure_not_retried() {
    let app = spawn_app().await;
    let req = request(
        transform(Default::default()),
        object("uploads/none/source.jpg"),
        "jobs/j/t",
    );
    let failure = app.run_err(req).await;
    assert_eq!(failure.code, ErrorCode::DownloadFailed);
    assert!(!failure.transient);
}

#[tokio::test]
async fn an_object_over_the_cap_is_too_large() {
    let app = spawn_app_with_cap().await;
    app.storage
        .put("uploads/big.jpg", Bytes::from(images::jpeg()), "image/jpeg")
        .await
        .expect("put source");
    let req = request(
        transform(Default::default()),
        object("uploads/big.jpg"),
        "jobs/j/t",
    );
    assert_eq!(app.run_err(req).await.code, ErrorCode::SourceTooLarge);
}

async fn spawn_app_with_cap() -> crate::helpers::TestApp {
    crate::helpers::spawn_app_with(|c| c.max_source_bytes = 1024).await
}

#[tokio::test]
async fn a_bad_object_key_is_a_bad_request() {
    let app = spawn_app().await;
    let req = request(
        transform(Default::default()),
        object("../etc/passwd"),
        "jobs/j/t",
    );
    assert_eq!(app.run_err(req).await.code, ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn a_full_transform_through_s3() {
    let s3 = S3Server::start().await;
    let app = spawn_app_on_s3(s3.location(), s3.options()).await;
    app.storage
        .put(
            "uploads/u1/source.jpg",
            Bytes::from(images::jpeg()),
            "image/jpeg",
        )
        .await
        .expect("put source");
    let params = v1::TransformParams {
        resize: Some(v1::Resize {
            width: 200,
            height: 200,
            fit: v1::Fit::Cover as i32,
        }),
        format: v1::ImageFormat::Webp as i32,
        ..Default::default()
    };
    let req = request(
        transform(params),
        object("uploads/u1/source.jpg"),
        "jobs/job-1/task-1",
    );
    let (_, outputs) = app.run_ok(req).await;
    assert_eq!(outputs.len(), 1);
    let output = &outputs[0];
    assert_eq!(
        (output.name.as_str(), output.content_type.as_str()),
        ("image.webp", "image/webp")
    );
    assert_eq!((output.width, output.height), (200, 200));
    assert!(output.url.starts_with("s3://"), "{}", output.url);
    let stored = app
        .storage
        .get(&output.key, u64::MAX)
        .await
        .expect("output in the bucket");
    assert_eq!(hex::encode(Sha256::digest(&stored)), output.sha256);
    let thumb = output.thumbnail.as_ref().expect("thumbnail");
    let stored_thumb = app
        .storage
        .get(&thumb.key, u64::MAX)
        .await
        .expect("thumbnail in the bucket");
    assert_eq!(stored_thumb.len() as u64, thumb.bytes);

    // A URL source lands in the same bucket too.
    let (_, outputs) = app.run_ok(app.transform_url("/image.jpg")).await;
    assert!(app.storage.exists(&outputs[0].key).await.expect("exists"));
}
