//! Model kinds against a real local server speaking the OpenAI Images API.

use atelier_codes::ErrorCode;
use atelier_processor::{ModelConfig, ModelKind, ProviderConfig};
use atelier_proto::v1::{self, process_event::Event};
use sha2::{Digest, Sha256};

use crate::helpers::{
    completed, images, metric_value, outputs, provider, request, spawn_app_with_provider,
    spawn_app_with_provider_and, url, TestApp, MODEL, PROVIDER,
};

/// Reads `output` and its thumbnail back and checks what the event claims.
async fn check_stored(app: &TestApp, output: &v1::Output) {
    let stored = app
        .storage
        .get(&output.key, u64::MAX)
        .await
        .expect("stored");
    assert_eq!(hex::encode(Sha256::digest(&stored)), output.sha256);
    assert_eq!(stored.len() as u64, output.bytes);
    let img = images::decode(&stored);
    assert_eq!((img.width(), img.height()), (output.width, output.height));
    let thumb = output.thumbnail.as_ref().expect("thumbnail");
    let stored_thumb = app.storage.get(&thumb.key, u64::MAX).await.expect("thumb");
    let thumb_img = images::decode(&stored_thumb);
    assert_eq!(
        (thumb_img.width(), thumb_img.height()),
        (thumb.width, thumb.height)
    );
    assert!(thumb.width.max(thumb.height) <= 256);
    assert_eq!(thumb.content_type, "image/png");
}

#[tokio::test]
async fn edit_sends_the_image_and_prompt_and_stores_each_result() {
    let app = spawn_app_with_provider().await;
    let params = v1::job_params::Params::Edit(v1::EditParams {
        prompt: "  make the box\n blue ".into(),
        negative_prompt: "blurry".into(),
        model: String::new(),
        seed: Some(7),
        size: "320x240".into(),
        num_images: 2,
    });
    let req = request(
        params,
        url(app.sources.url("/image.jpg")),
        "jobs/job-1/task-1",
    );
    let (events, failure) = app.run(req).await;
    assert!(failure.is_none(), "{failure:?}");
    assert!(events.iter().any(|e| matches!(e, Event::SourceFetched(_))));
    let outs = outputs(&events);
    let names: Vec<&str> = outs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["edit-1.png", "edit-2.png"]);
    for out in &outs {
        assert_eq!(out.key, format!("jobs/job-1/task-1/{}", out.name));
        assert_eq!((out.width, out.height), (320, 240));
        assert_eq!(out.content_type, "image/png");
        check_stored(&app, out).await;
    }
    assert_ne!(outs[0].sha256, outs[1].sha256, "distinct images");
    let done = completed(&events);
    assert_eq!((done.from_cache, done.failed_units), (false, 0));

    let seen = app.provider().seen();
    assert_eq!(seen.len(), 1);
    let call = &seen[0];
    assert_eq!(call.path, "/v1/images/edits");
    assert_eq!(
        call.authorization.as_deref(),
        Some(format!("Bearer {}", provider::API_KEY).as_str())
    );
    assert_eq!(call.field("prompt").as_deref(), Some("make the box blue"));
    assert_eq!(call.field("negative_prompt").as_deref(), Some("blurry"));
    assert_eq!(call.field("model").as_deref(), Some(MODEL));
    assert_eq!(call.field("n").as_deref(), Some("2"));
    assert_eq!(call.field("size").as_deref(), Some("320x240"));
    assert_eq!(call.field("seed").as_deref(), Some("7"));
    assert_eq!(call.image.as_deref(), Some(images::jpeg().as_slice()));
}

#[tokio::test]
async fn generate_needs_no_source_and_sends_its_parameters() {
    let app = spawn_app_with_provider().await;
    let params = v1::job_params::Params::Generate(v1::GenerateParams {
        prompt: "a red shoe".into(),
        negative_prompt: "text".into(),
        model: MODEL.into(),
        width: 512,
        height: 384,
        num_images: 1,
        steps: 30,
        guidance_scale: 7.5,
        seed: Some(3),
    });
    let mut req = request(params, url(String::new()), "jobs/job-1/task-1");
    req.source = None;
    let (events, failure) = app.run(req).await;
    assert!(failure.is_none(), "{failure:?}");
    assert!(!events.iter().any(|e| matches!(e, Event::SourceFetched(_))));
    let outs = outputs(&events);
    assert_eq!(outs.len(), 1);
    assert_eq!(outs[0].name, "image-1.png");
    assert_eq!((outs[0].width, outs[0].height), (512, 384));
    check_stored(&app, &outs[0]).await;

    let call = &app.provider().seen()[0];
    assert_eq!(call.path, "/v1/images/generations");
    assert_eq!(call.fields["prompt"], "a red shoe");
    assert_eq!(call.fields["negative_prompt"], "text");
    assert_eq!(call.fields["size"], "512x384");
    assert_eq!(call.fields["steps"], 30);
    assert_eq!(call.fields["guidance_scale"], 7.5);
    assert_eq!(call.fields["seed"], 3);
    assert_eq!(call.fields["response_format"], "b64_json");
}

#[tokio::test]
async fn url_answers_are_fetched_through_the_downloader() {
    let app = spawn_app_with_provider().await;
    app.provider().answer_with_urls(true);
    let (events, failure) = app.run(app.edit_url("/image.jpg", "make it blue")).await;
    assert!(failure.is_none(), "{failure:?}");
    let outs = outputs(&events);
    assert_eq!(outs.len(), 1);
    check_stored(&app, &outs[0]).await;
}

#[tokio::test]
async fn url_answers_to_blocked_addresses_are_refused() {
    // Only the provider may be on loopback here; its image URLs are checked like sources.
    let app = spawn_app_with_provider_and(|config, _| config.allow_private_sources.clear()).await;
    app.provider().answer_with_urls(true);
    let generate = v1::job_params::Params::Generate(v1::GenerateParams {
        prompt: "a shoe".into(),
        ..Default::default()
    });
    let mut req = request(generate, url(String::new()), "jobs/j/t");
    req.source = None;
    let failure = app.run_err(req).await;
    assert_eq!(failure.code, ErrorCode::ModelCallFailed);
    assert!(!failure.transient);
    assert!(
        failure.message.contains("not allowed"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable() {
    let app = spawn_app_with_provider().await;
    for status in [429, 500, 503] {
        app.provider().fail_next(1, status);
        let failure = app
            .run_err(app.edit_url("/image.jpg", "make it blue"))
            .await;
        assert_eq!(failure.code, ErrorCode::ModelCallFailed, "{status}");
        assert!(failure.transient, "{status} should be retried");
    }
    let series = |result: &str| {
        format!(
            r#"atelier_processor_provider_calls_total{{provider="{PROVIDER}",result="{result}"}}"#
        )
    };
    assert_eq!(app.metric(&series("rate_limited")).await, 1.0);
    assert_eq!(app.metric(&series("server_error")).await, 2.0);
    // The next call goes through.
    let (_, failure) = app.run(app.edit_url("/image.jpg", "make it blue")).await;
    assert!(failure.is_none(), "{failure:?}");
}

#[tokio::test]
async fn a_safety_refusal_is_content_rejected() {
    let app = spawn_app_with_provider().await;
    app.provider().refuse_prompts_containing("forbidden");
    let failure = app
        .run_err(app.edit_url("/image.jpg", "something forbidden"))
        .await;
    assert_eq!(failure.code, ErrorCode::ContentRejected);
    assert!(!failure.transient);
    assert!(
        failure.message.contains("safety system"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_wrong_key_is_not_retried_takes_the_provider_off_and_no_key_is_logged() {
    let app = spawn_app_with_provider_and(|config, server| {
        config.providers = vec![ProviderConfig::new(
            PROVIDER,
            &server.base_url(),
            Some("sk-wrong"),
            vec![ModelConfig {
                id: MODEL.into(),
                kinds: vec![ModelKind::Edit],
            }],
        )];
    })
    .await;
    let failure = app
        .run_err(app.edit_url("/image.jpg", "make it blue"))
        .await;
    assert_eq!(failure.code, ErrorCode::ModelUnavailable);
    assert!(!failure.transient);
    assert!(failure.message.contains("401"), "{}", failure.message);
    assert!(!failure.message.contains("sk-wrong"), "{}", failure.message);
    let again = app.run_err(app.edit_url("/image.jpg", "make it red")).await;
    assert_eq!(again.code, ErrorCode::ModelUnavailable);
    assert_eq!(app.provider().calls(), 1, "not called again");
}

#[tokio::test]
async fn an_unreachable_provider_is_retryable() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr")
    };
    let app = spawn_app_with_provider_and(|config, _| {
        config.providers[0].base_url = format!("http://{closed}/v1");
    })
    .await;
    let failure = app
        .run_err(app.edit_url("/image.jpg", "make it blue"))
        .await;
    assert_eq!(failure.code, ErrorCode::ModelCallFailed);
    assert!(failure.transient);
}

#[tokio::test]
async fn an_unknown_model_or_an_unserved_kind_is_model_unavailable() {
    let app = spawn_app_with_provider_and(|config, _| {
        config.providers[0].models = vec![ModelConfig {
            id: MODEL.into(),
            kinds: vec![ModelKind::Generate],
        }];
    })
    .await;
    let failure = app
        .run_err(app.edit_url("/image.jpg", "make it blue"))
        .await;
    assert_eq!(failure.code, ErrorCode::ModelUnavailable);
    let generate = v1::job_params::Params::Generate(v1::GenerateParams {
        prompt: "a shoe".into(),
        model: "no-such-model".into(),
        ..Default::default()
    });
    let failure = app
        .run_err(request(generate, url(String::new()), "jobs/j/t"))
        .await;
    assert_eq!(failure.code, ErrorCode::ModelUnavailable);
    assert!(
        failure.message.contains("no-such-model"),
        "{}",
        failure.message
    );
    assert_eq!(app.provider().calls(), 0);
}

#[tokio::test]
async fn model_kinds_refuse_extreme_aspect_ratios_before_any_call() {
    let app = spawn_app_with_provider().await;
    let failure = app.run_err(app.edit_url("/wide.png", "make it blue")).await;
    assert_eq!(failure.code, ErrorCode::InvalidDimensions);
    assert_eq!(app.provider().calls(), 0);
    // The same image is fine for a local kind.
    let transform = request(
        crate::helpers::transform(Default::default()),
        url(app.sources.url("/wide.png")),
        "jobs/j/t",
    );
    app.run_ok(transform).await;
}

#[tokio::test]
async fn bad_model_parameters_are_bad_requests() {
    let app = spawn_app_with_provider().await;
    let failure = app.run_err(app.edit_url("/image.jpg", "   ")).await;
    assert_eq!(failure.code, ErrorCode::InvalidArgument);
    let too_many = v1::job_params::Params::Edit(v1::EditParams {
        prompt: "x".into(),
        num_images: 5,
        ..Default::default()
    });
    let req = request(too_many, url(app.sources.url("/image.jpg")), "jobs/j/t");
    assert_eq!(app.run_err(req).await.code, ErrorCode::InvalidArgument);
    assert_eq!(app.provider().calls(), 0);
}

#[tokio::test]
async fn capabilities_list_the_model_kinds_and_providers() {
    let app = spawn_app_with_provider().await;
    let caps = app
        .client
        .clone()
        .get_capabilities(v1::GetCapabilitiesRequest {})
        .await
        .expect("capabilities")
        .into_inner();
    let kinds: Vec<i32> = [
        v1::JobKind::Transform,
        v1::JobKind::BasicClean,
        v1::JobKind::Edit,
        v1::JobKind::Generate,
        v1::JobKind::PoseSet,
    ]
    .map(|k| k as i32)
    .to_vec();
    assert_eq!(caps.kinds, kinds);
    assert_eq!(caps.providers.len(), 1);
    let p = &caps.providers[0];
    assert_eq!((p.name.as_str(), p.max_concurrency), (PROVIDER, 3));
    assert_eq!(p.models.len(), 1);
    assert_eq!(p.models[0].id, MODEL);
    assert_eq!(p.models[0].provider, PROVIDER);
    assert_eq!(p.models[0].kinds.len(), 3);

    let plain = crate::helpers::spawn_app().await;
    let caps = plain
        .client
        .clone()
        .get_capabilities(v1::GetCapabilitiesRequest {})
        .await
        .expect("capabilities")
        .into_inner();
    assert_eq!(caps.kinds.len(), 2);
    assert!(caps.providers.is_empty());
}

#[tokio::test]
async fn providers_can_come_from_a_toml_file() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("providers.toml");
    let app = spawn_app_with_provider_and(|config, server| {
        let text = format!(
            "[[providers]]\nname = \"from-file\"\nbase_url = \"{}\"\napi_key = \"{}\"\n\
             max_concurrency = 2\nmodels = [{{ id = \"file-model\", kinds = [\"edit\"] }}]\n",
            server.base_url(),
            provider::API_KEY
        );
        std::fs::write(&path, text).expect("write file");
        config.providers.clear();
        config.providers_file = Some(path.clone());
    })
    .await;
    let params = v1::job_params::Params::Edit(v1::EditParams {
        prompt: "blue".into(),
        model: "file-model".into(),
        ..Default::default()
    });
    let (events, failure) = app
        .run(request(
            params,
            url(app.sources.url("/image.jpg")),
            "jobs/j/t",
        ))
        .await;
    assert!(failure.is_none(), "{failure:?}");
    assert_eq!(outputs(&events).len(), 1);
    assert_eq!(
        app.provider().seen()[0].field("model").as_deref(),
        Some("file-model")
    );
}

#[tokio::test]
async fn dropping_the_stream_abandons_the_provider_call_and_stores_nothing() {
    let app = spawn_app_with_provider().await;
    app.provider().hold();
    let mut client = app.client.clone();
    let stream = client
        .process(app.edit_url("/image.jpg", "make it blue"))
        .await
        .expect("accepted")
        .into_inner();
    app.provider().wait_in_flight(1).await;
    drop(stream);
    // The processor hangs up on the provider only because the task was cancelled.
    app.provider().wait_abandoned(1).await;
    app.provider().release_all();
    assert!(app.local_files_under("jobs/job-1/task-1").is_empty());
    let metrics = app.metrics().await;
    let series = |name: &str| format!("atelier_processor_{name}");
    assert_eq!(
        metric_value(
            &metrics,
            &series(r#"provider_calls_in_flight{provider="fake"}"#)
        ),
        0.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            &series(r#"provider_calls_total{provider="fake",result="cancelled"}"#)
        ),
        1.0
    );
    assert_eq!(
        metric_value(
            &metrics,
            &series(r#"tasks_total{kind="edit",result="cancelled"}"#)
        ),
        1.0
    );
}

#[tokio::test]
async fn a_provider_answer_that_is_not_an_image_is_not_stored() {
    let app = spawn_app_with_provider().await;
    app.provider()
        .answer_with_bytes(Some(b"<html>rate limited</html>".to_vec()));
    let failure = app
        .run_err(app.edit_url("/image.jpg", "make it blue"))
        .await;
    assert_eq!(failure.code, ErrorCode::ModelCallFailed);
    assert!(!failure.transient);
    assert!(
        failure.message.contains("unsupported format"),
        "{}",
        failure.message
    );

    app.provider().answer_with_bytes(Some(images::png(10, 10)));
    let failure = app.run_err(app.edit_url("/image.jpg", "make it red")).await;
    assert_eq!(failure.code, ErrorCode::ModelCallFailed);
    assert!(failure.message.contains("10x10"), "{}", failure.message);
    assert!(app.local_files_under("jobs/job-1/task-1").is_empty());
}

#[tokio::test]
async fn a_provider_slower_than_its_timeout_is_retryable() {
    let app = spawn_app_with_provider_and(|config, _| {
        config.providers[0].timeout_seconds = 0.3;
    })
    .await;
    // Held calls never answer; the processor gives up after its timeout, not the test.
    app.provider().hold();
    let failure = app
        .run_err(app.edit_url("/image.jpg", "make it blue"))
        .await;
    assert_eq!(failure.code, ErrorCode::ModelCallFailed);
    assert!(failure.transient);
    assert!(
        failure.message.contains("did not answer"),
        "{}",
        failure.message
    );
    assert_eq!(
        app.metric(r#"atelier_processor_provider_calls_total{provider="fake",result="timeout"}"#)
            .await,
        1.0
    );
}
