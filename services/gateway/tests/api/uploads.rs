//! `POST /v1/uploads`: raw bodies and multipart forms streamed into UploadSource, capped while streaming.

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::helpers::{assert_error, images, spawn_app, status_and_json, Backend};
use crate::on_both_databases;

on_both_databases!(raw_and_multipart_uploads_are_stored_and_usable_as_sources);

async fn raw_and_multipart_uploads_are_stored_and_usable_as_sources(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let jpeg = images::jpeg();
    let digest = hex::encode(Sha256::digest(&jpeg));

    let (status, raw) = status_and_json(
        app.call(
            reqwest::Method::POST,
            "/v1/uploads?filename=photo.jpg",
            &shop,
            "shopper",
        )
        .header("content-type", "image/jpeg")
        .body(jpeg.clone())
        .send()
        .await
        .expect("upload"),
    )
    .await;
    assert_eq!(status, 200, "{raw}");
    assert_eq!(raw["bytes"], jpeg.len() as u64);
    assert_eq!(raw["sha256"], digest.as_str());
    assert_eq!(raw["filename"], "photo.jpg");
    assert_eq!(raw["content_type"], "image/jpeg");
    assert_eq!(app.stored_uploads(), 1);

    let png = images::png(64, 48);
    let form = reqwest::multipart::Form::new()
        .text("note", "ignored")
        .part(
            "file",
            reqwest::multipart::Part::bytes(png.clone())
                .file_name("product.png")
                .mime_str("image/png")
                .expect("mime"),
        );
    let (status, multi) = status_and_json(
        app.call(reqwest::Method::POST, "/v1/uploads", &shop, "shopper")
            .multipart(form)
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_eq!(status, 200, "{multi}");
    assert_eq!(multi["bytes"], png.len() as u64);
    assert_eq!(multi["filename"], "product.png");
    assert_eq!(multi["content_type"], "image/png");

    let (status, job) = app
        .post_json(
            &shop,
            "/v1/jobs",
            json!({
                "kind": "transform",
                "params": {"resize": {"width": 32}},
                "sources": [{"upload_id": raw["id"]}, {"upload_id": multi["id"]}],
            }),
        )
        .await;
    assert_eq!(status, 200, "{job}");
    let done = app.finish(&shop, job["id"].as_str().expect("id")).await;
    assert_eq!(done["state"], "succeeded", "{done}");
    assert_eq!(done["tasks"][0]["source"]["upload_id"], raw["id"]);
    assert_eq!(done["tasks"][0]["source_info"]["sha256"], digest.as_str());
    assert_eq!(done["tasks"][1]["outputs"][0]["width"], 32);
}

on_both_databases!(an_oversized_upload_is_refused_with_413_and_nothing_is_stored);

async fn an_oversized_upload_is_refused_with_413_and_nothing_is_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let mut body = images::jpeg();
    body.resize(10 * 1024 * 1024 + 1024, 0);
    let (status, err) = status_and_json(
        app.call(reqwest::Method::POST, "/v1/uploads", &shop, "shopper")
            .header("content-type", "application/octet-stream")
            .body(body.clone())
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_error(status, &err, 413, 3008, "SOURCE_TOO_LARGE");

    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(body).file_name("huge.jpg"),
    );
    let (status, err) = status_and_json(
        app.call(reqwest::Method::POST, "/v1/uploads", &shop, "shopper")
            .multipart(form)
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_error(status, &err, 413, 3008, "SOURCE_TOO_LARGE");

    // Exactly at the cap is fine: the limit is not off by one.
    let mut at_cap = images::jpeg();
    at_cap.resize(10 * 1024 * 1024, 0);
    let (status, ok) = status_and_json(
        app.call(reqwest::Method::POST, "/v1/uploads", &shop, "shopper")
            .body(at_cap)
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_eq!(status, 200, "{ok}");
    assert_eq!(ok["bytes"], 10 * 1024 * 1024);
    // Only the upload at the cap was stored: the refused streams never became uploads.
    assert_eq!(app.stored_upload_sizes(), vec![10 * 1024 * 1024]);
}

on_both_databases!(uploads_that_are_not_images_or_have_no_file_are_refused);

async fn uploads_that_are_not_images_or_have_no_file_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let shop = app.shop().await;
    let (status, err) = status_and_json(
        app.call(reqwest::Method::POST, "/v1/uploads", &shop, "shopper")
            .body("plain text, not pixels")
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_error(status, &err, 415, 3003, "UNSUPPORTED_FORMAT");
    let form = reqwest::multipart::Form::new().text("note", "no file here");
    let (status, err) = status_and_json(
        app.call(reqwest::Method::POST, "/v1/uploads", &shop, "shopper")
            .multipart(form)
            .send()
            .await
            .expect("upload"),
    )
    .await;
    assert_error(status, &err, 400, 1003, "INVALID_ARGUMENT");
    assert_eq!(err["error"]["details"][0]["field"], "file");
}

on_both_databases!(a_large_upload_with_a_bad_key_reads_401_not_a_broken_connection);

async fn a_large_upload_with_a_bad_key_reads_401_not_a_broken_connection(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut body = images::jpeg();
    body.resize(6 * 1024 * 1024, 0);
    for _ in 0..3 {
        let (status, err) = status_and_json(
            app.http
                .post(app.url("/v1/uploads"))
                .bearer_auth("atl_not-a-real-key")
                .body(body.clone())
                .send()
                .await
                .expect("the answer arrives"),
        )
        .await;
        assert_error(status, &err, 401, 1001, "UNAUTHENTICATED");
    }
    assert_eq!(app.stored_uploads(), 0);
}
