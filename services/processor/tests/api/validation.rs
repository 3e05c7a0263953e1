//! SPEC §4 validation: each bad source or request gets its code.

use atelier_codes::ErrorCode;
use atelier_proto::v1;

use crate::helpers::{request, spawn_app, transform, url};

#[tokio::test]
async fn non_image_bytes_are_unsupported_format() {
    let app = spawn_app().await;
    let failure = app.run_err(app.transform_url("/not-an-image")).await;
    assert_eq!(failure.code, ErrorCode::UnsupportedFormat);
}

#[tokio::test]
async fn a_10x10_png_has_invalid_dimensions() {
    let app = spawn_app().await;
    let failure = app.run_err(app.transform_url("/small.png")).await;
    assert_eq!(failure.code, ErrorCode::InvalidDimensions);
    assert!(failure.message.contains("10x10"), "{}", failure.message);
}

#[tokio::test]
async fn a_header_claiming_60_megapixels_is_refused_before_decoding() {
    let app = spawn_app().await;
    let failure = app.run_err(app.transform_url("/huge-header.png")).await;
    assert_eq!(failure.code, ErrorCode::InvalidDimensions);
}

#[tokio::test]
async fn a_truncated_jpeg_fails_to_decode() {
    let app = spawn_app().await;
    let failure = app.run_err(app.transform_url("/truncated.jpg")).await;
    assert_eq!(failure.code, ErrorCode::DecodeFailed);
}

#[tokio::test]
async fn too_large_with_content_length() {
    let app = spawn_app().await;
    let failure = app.run_err(app.transform_url("/too-large")).await;
    assert_eq!(failure.code, ErrorCode::SourceTooLarge);
}

#[tokio::test]
async fn too_large_while_streaming_without_length() {
    let app = spawn_app().await;
    let failure = app.run_err(app.transform_url("/too-large-chunked")).await;
    assert_eq!(failure.code, ErrorCode::SourceTooLarge);
}

#[tokio::test]
async fn missing_params_and_source_are_bad_requests() {
    let app = spawn_app().await;
    let mut req = app.transform_url("/image.jpg");
    req.params = None;
    req.source = None;
    let mut client = app.client.clone();
    let status = client.process(req).await.expect_err("invalid request");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        atelier_codes::decode(&status).code,
        ErrorCode::InvalidArgument
    );
    let bad = tonic_types::StatusExt::get_details_bad_request(&status).expect("BadRequest details");
    let fields: Vec<&str> = bad
        .field_violations
        .iter()
        .map(|v| v.field.as_str())
        .collect();
    assert_eq!(fields, ["params", "source"]);
}

#[tokio::test]
async fn bad_transform_values_are_bad_requests() {
    let app = spawn_app().await;
    for params in [
        v1::TransformParams {
            rotate: 45,
            ..Default::default()
        },
        v1::TransformParams {
            quality: 101,
            ..Default::default()
        },
        v1::TransformParams {
            format: 42,
            ..Default::default()
        },
    ] {
        let req = request(
            transform(params),
            url(app.sources.url("/image.jpg")),
            "jobs/j/t",
        );
        assert_eq!(app.run_err(req).await.code, ErrorCode::InvalidArgument);
    }
}

#[tokio::test]
async fn a_crop_outside_the_image_is_a_bad_request() {
    let app = spawn_app().await;
    let params = v1::TransformParams {
        crop: Some(v1::Crop {
            x: 600,
            y: 0,
            width: 100,
            height: 100,
        }),
        ..Default::default()
    };
    let req = request(
        transform(params),
        url(app.sources.url("/image.jpg")),
        "jobs/j/t",
    );
    assert_eq!(app.run_err(req).await.code, ErrorCode::InvalidArgument);
}

#[tokio::test]
async fn model_kinds_need_a_provider() {
    let app = spawn_app().await;
    let generate = v1::job_params::Params::Generate(v1::GenerateParams {
        prompt: "a shoe".into(),
        ..Default::default()
    });
    let req = request(generate, url(app.sources.url("/image.jpg")), "jobs/j/t");
    let failure = app.run_err(req).await;
    assert_eq!(failure.code, ErrorCode::ModelUnavailable);
    assert!(
        failure.message.contains("no model provider"),
        "{}",
        failure.message
    );
}
