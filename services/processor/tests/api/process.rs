//! End to end: transform and basic_clean from a URL source into LocalFs storage.

use atelier_codes::ErrorCode;
use atelier_proto::v1::{self, process_event::Event};
use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::helpers::{as_task, images, request, spawn_app, transform, url, TestApp};

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

/// The names of the chunks after the RIFF/WEBP header: `VP8 ` is a lossy frame, `VP8L` a lossless
/// one.
fn webp_chunks(data: &[u8]) -> Vec<String> {
    assert_eq!(&data[0..4], b"RIFF", "not a RIFF file");
    assert_eq!(&data[8..12], b"WEBP", "not a WebP file");
    let mut names = Vec::new();
    let mut at = 12;
    while at + 8 <= data.len() {
        names.push(String::from_utf8_lossy(&data[at..at + 4]).into_owned());
        let len = u32::from_le_bytes([data[at + 4], data[at + 5], data[at + 6], data[at + 7]]);
        at += 8 + len as usize + (len as usize & 1);
    }
    names
}

#[tokio::test]
async fn webp_is_lossy_at_the_quality_and_lossless_only_when_asked() {
    let app = spawn_app().await;
    // The repository's sample product photo (1600x1200), an upload in the shared storage.
    let photo = include_bytes!("../../../../assets/sample-product.jpg");
    app.storage
        .put(
            "uploads/u1/photo.jpg",
            Bytes::from_static(photo),
            "image/jpeg",
        )
        .await
        .expect("put source");
    // Tasks of one tenant, so the content cache is on: each variant must be its own entry.
    let webp = |task: &str, quality: u32, lossless: bool| {
        let params = v1::TransformParams {
            resize: Some(v1::Resize {
                width: 800,
                height: 0,
                fit: v1::Fit::Inside as i32,
            }),
            format: v1::ImageFormat::Webp as i32,
            quality,
            lossless,
            ..Default::default()
        };
        as_task(
            request(
                transform(params),
                v1::source_ref::Source::ObjectKey("uploads/u1/photo.jpg".into()),
                "unused",
            ),
            "tenant-1",
            task,
        )
    };
    let mut stored = Vec::new();
    for (task, quality, lossless, frame) in [
        ("lossy-75", 75, false, "VP8 "),
        ("lossy-30", 30, false, "VP8 "),
        ("lossless", 75, true, "VP8L"),
        ("quality-100", 100, false, "VP8L"),
    ] {
        let (_, outputs) = app.run_ok(webp(task, quality, lossless)).await;
        assert_eq!(outputs.len(), 1);
        let output = &outputs[0];
        assert_eq!(output.name, "image.webp");
        assert_eq!(output.content_type, "image/webp");
        let data = app
            .storage
            .get(&output.key, u64::MAX)
            .await
            .expect("output stored");
        assert_eq!(webp_chunks(&data), [frame], "{task}");
        let img = images::decode(&data);
        assert_eq!((img.width(), img.height()), (800, 600), "{task}");
        stored.push(data);
    }
    let [q75, q30, lossless, q100] = &stored[..] else {
        unreachable!()
    };
    assert!(q30.len() < q75.len(), "{} vs {}", q30.len(), q75.len());
    assert!(
        q75.len() * 4 < lossless.len(),
        "lossy {} bytes, lossless {} bytes",
        q75.len(),
        lossless.len()
    );
    assert_eq!(
        images::decode(lossless),
        images::decode(q100),
        "quality 100 is lossless too"
    );
}

#[tokio::test]
async fn lossless_jpeg_is_refused_with_1003() {
    let app = spawn_app().await;
    let params = v1::TransformParams {
        lossless: true,
        ..Default::default()
    };
    // The source is a JPEG and no format is asked for: the output would be a lossless JPEG.
    let req = request(
        transform(params),
        url(app.sources.url("/image.jpg")),
        "jobs/job-1/task-1",
    );
    let failure = app.run_err(req).await;
    assert_eq!(failure.code, ErrorCode::InvalidArgument, "{failure:?}");
    assert!(failure.message.contains("lossless"), "{}", failure.message);
}
