//! End to end: transform and basic_clean from a URL source into LocalFs storage.

use atelier_proto::v1::{self, process_event::Event};
use sha2::{Digest, Sha256};

use crate::helpers::{images, request, spawn_app, transform, url, TestApp};

/// Reads an output and its thumbnail back from storage and checks what the event claims.
async fn check_stored(app: &TestApp, output: &v1::Output) -> image::DynamicImage {
    let stored = app
        .storage
        .get(&output.key, u64::MAX)
        .await
        .expect("output stored");
    assert_eq!(
        hex::encode(Sha256::digest(&stored)),
        output.sha256,
        "sha256 of {}",
        output.key
    );
    assert_eq!(stored.len() as u64, output.bytes);
    assert_eq!(output.url, app.storage.url(&output.key));
    assert!(!output.from_cache);
    let img = images::decode(&stored);
    assert_eq!((img.width(), img.height()), (output.width, output.height));

    let thumb = output.thumbnail.as_ref().expect("thumbnail");
    assert!(
        thumb.key.starts_with("jobs/job-1/task-1/thumbs/"),
        "{}",
        thumb.key
    );
    let stored_thumb = app
        .storage
        .get(&thumb.key, u64::MAX)
        .await
        .expect("thumbnail stored");
    assert_eq!(stored_thumb.len() as u64, thumb.bytes);
    let thumb_img = images::decode(&stored_thumb);
    assert_eq!(
        (thumb_img.width(), thumb_img.height()),
        (thumb.width, thumb.height)
    );
    assert!(thumb.width <= 256 && thumb.height <= 256);
    assert!(
        thumb.width.max(thumb.height) == 256
            || (thumb.width, thumb.height) == (output.width, output.height)
    );
    img
}

#[tokio::test]
async fn transform_resizes_and_stores_the_output() {
    let app = spawn_app().await;
    let params = v1::TransformParams {
        resize: Some(v1::Resize {
            width: 320,
            height: 0,
            fit: v1::Fit::Contain as i32,
        }),
        format: v1::ImageFormat::Png as i32,
        ..Default::default()
    };
    let req = request(
        transform(params),
        url(app.sources.url("/image.jpg")),
        "jobs/job-1/task-1/",
    );
    let (events, outputs) = app.run_ok(req).await;

    assert!(matches!(&events[0], Event::Accepted(a) if a.processor_id == "test-processor"));
    let Event::SourceFetched(info) = &events[1] else {
        panic!("second event: {:?}", events[1])
    };
    let source = images::jpeg();
    assert_eq!(info.sha256, hex::encode(Sha256::digest(&source)));
    assert_eq!(
        (info.width, info.height, info.bytes),
        (640, 480, source.len() as u64)
    );
    assert_eq!(info.format, v1::ImageFormat::Jpeg as i32);

    assert_eq!(outputs.len(), 1);
    let output = &outputs[0];
    assert_eq!(output.name, "image.png");
    assert_eq!(output.key, "jobs/job-1/task-1/image.png");
    assert_eq!(output.content_type, "image/png");
    assert_eq!((output.width, output.height), (320, 240));
    check_stored(&app, output).await;
}

#[tokio::test]
async fn transform_keeps_the_source_format_by_default() {
    let app = spawn_app().await;
    let params = v1::TransformParams {
        rotate: 90,
        ..Default::default()
    };
    let req = request(
        transform(params),
        url(app.sources.url("/image.jpg")),
        "jobs/job-1/task-1",
    );
    let (_, outputs) = app.run_ok(req).await;
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0].content_type, "image/jpeg");
    assert_eq!((outputs[0].width, outputs[0].height), (480, 640));
    assert_eq!(
        outputs[0].thumbnail.as_ref().map(|t| t.key.as_str()),
        Some("jobs/job-1/task-1/thumbs/image.jpg")
    );
    check_stored(&app, &outputs[0]).await;
}

#[tokio::test]
async fn basic_clean_all_makes_three_outputs() {
    let app = spawn_app().await;
    let params = v1::job_params::Params::BasicClean(v1::BasicCleanParams {
        template: v1::CleanTemplate::All as i32,
        ..Default::default()
    });
    let req = request(
        params,
        url(app.sources.url("/image.jpg")),
        "jobs/job-1/task-1",
    );
    let (events, outputs) = app.run_ok(req).await;

    assert!(
        events.iter().any(|e| matches!(e, Event::Progress(_))),
        "progress events expected"
    );
    let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["matting.png", "white-bg.jpg", "enhanced.jpg"]);
    for output in &outputs {
        let img = check_stored(&app, output).await;
        if output.name == "matting.png" {
            assert_eq!(output.content_type, "image/png");
            assert!(img.color().has_alpha(), "matting.png must carry alpha");
            assert_eq!(
                output.thumbnail.as_ref().map(|t| t.content_type.as_str()),
                Some("image/png")
            );
        } else {
            assert_eq!(output.content_type, "image/jpeg");
        }
    }
}
