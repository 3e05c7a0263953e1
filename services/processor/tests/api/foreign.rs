//! The seeds' own providers — VolcEngine Ark, Alibaba DashScope, RunningHub workflows — each against a
//! local server speaking its protocol: requests checked field by field, answers and errors in the
//! provider's shapes, asynchronous polling, fallback between providers, concurrency and rate limits
//! seen from the server, and usage counted per tenant, account, provider and model.

use std::time::Duration;

use atelier_codes::ErrorCode;
use atelier_processor::providers::{NodeField, WorkflowConfig};
use atelier_processor::{ModelConfig, ModelKind, Protocol, ProviderConfig};
use atelier_proto::v1::{self, process_event::Event};
use atelier_testkit::foreign::{self, Failure, ForeignServer, Speaks};
use base64::Engine as _;

use crate::helpers::{completed, images, outputs, request, spawn_app_with, url, TestApp, TOKEN};

const ALL_KINDS: [ModelKind; 3] = [ModelKind::Generate, ModelKind::Edit, ModelKind::PoseSet];

fn model(id: &str, kinds: &[ModelKind]) -> Vec<ModelConfig> {
    vec![ModelConfig {
        id: id.into(),
        kinds: kinds.to_vec(),
    }]
}

fn ark_config(server: &ForeignServer, name: &str) -> ProviderConfig {
    let mut config = ProviderConfig::with_protocol(
        name,
        Protocol::Ark,
        &server.base_url(),
        Some(foreign::KEY),
        model("seedream", &ALL_KINDS),
    );
    config
        .upstream_models
        .insert("seedream".into(), "doubao-seedream-4-0-250828".into());
    config
}

fn dashscope_config(server: &ForeignServer, name: &str, id: &str) -> ProviderConfig {
    let mut config = ProviderConfig::with_protocol(
        name,
        Protocol::DashScope,
        &server.base_url(),
        Some(foreign::KEY),
        model(id, &ALL_KINDS),
    );
    config.poll_interval_ms = 5;
    config
}

fn runninghub_config(server: &ForeignServer, images_per_run: u32) -> ProviderConfig {
    let mut config = ProviderConfig::with_protocol(
        "runninghub",
        Protocol::RunningHub,
        &server.base_url(),
        Some(foreign::KEY),
        model("model_pose12", &ALL_KINDS),
    );
    config.poll_interval_ms = 5;
    config.workflows = vec![WorkflowConfig {
        model: "model_pose12".into(),
        workflow_id: "1950000000000000001".into(),
        image_node: Some(NodeField {
            node_id: "12".into(),
            field_name: "image".into(),
        }),
        prompt_node: Some(NodeField {
            node_id: "6".into(),
            field_name: "text".into(),
        }),
        seed_node: Some(NodeField {
            node_id: "3".into(),
            field_name: "seed".into(),
        }),
        images_per_run,
    }];
    config
}

async fn app_with(providers: Vec<ProviderConfig>) -> TestApp {
    spawn_app_with(move |config| config.providers = providers).await
}

fn generate(model: &str, n: u32, seed: Option<i64>) -> v1::ProcessRequest {
    let params = v1::job_params::Params::Generate(v1::GenerateParams {
        prompt: "a red  sneaker\non white".into(),
        negative_prompt: "text".into(),
        model: model.into(),
        width: 512,
        height: 384,
        num_images: n,
        steps: 0,
        guidance_scale: 2.5,
        seed,
    });
    let mut req = request(params, url(String::new()), "t/tenant-1/jobs/job-1/task-1/1");
    req.source = None;
    req
}

fn edit(app: &TestApp, model: &str, prompt: &str) -> v1::ProcessRequest {
    let params = v1::job_params::Params::Edit(v1::EditParams {
        prompt: prompt.into(),
        negative_prompt: "blurry".into(),
        model: model.into(),
        seed: Some(11),
        size: "320x240".into(),
        num_images: 1,
    });
    request(
        params,
        url(app.sources.url("/image.jpg")),
        "t/tenant-1/jobs/job-1/task-1/1",
    )
}

fn pose_set(app: &TestApp, model: &str) -> v1::ProcessRequest {
    let params = v1::job_params::Params::PoseSet(v1::PoseSetParams {
        scene: v1::Scene::Studio as i32,
        category: "hoodie".into(),
        description: "grey cotton hoodie".into(),
        model: model.into(),
    });
    request(
        params,
        url(app.sources.url("/image.jpg")),
        "t/tenant-1/jobs/job-1/task-1/1",
    )
}

fn jpeg_data_uri() -> String {
    format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(images::jpeg())
    )
}

fn log_lines(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Log(l) => Some(format!("{}: {}", l.level, l.message)),
            _ => None,
        })
        .collect()
}

fn assert_distinct(outs: &[v1::Output]) {
    let mut shas: Vec<&str> = outs.iter().map(|o| o.sha256.as_str()).collect();
    shas.sort_unstable();
    shas.dedup();
    assert_eq!(shas.len(), outs.len(), "distinct images");
}

// ---- VolcEngine Ark ----

#[tokio::test]
async fn ark_generate_sends_seedream_fields_and_stores_each_image_of_the_set() {
    let server = ForeignServer::start(Speaks::Ark).await;
    let app = app_with(vec![ark_config(&server, "ark")]).await;
    let (events, outs) = app.run_ok(generate("seedream", 2, Some(42))).await;
    let names: Vec<&str> = outs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["image-1.png", "image-2.png"]);
    assert!(outs.iter().all(|o| (o.width, o.height) == (512, 384)));
    assert_distinct(&outs);

    let calls = server.seen_at("/api/v3/images/generations");
    assert_eq!(calls.len(), 1, "one call for the whole set");
    let call = &calls[0];
    assert_eq!(
        call.header("authorization"),
        Some(format!("Bearer {}", foreign::KEY).as_str())
    );
    let body = &call.json;
    assert_eq!(body["model"], "doubao-seedream-4-0-250828");
    assert_eq!(body["prompt"], "a red sneaker on white");
    assert_eq!(body["size"], "512x384");
    assert_eq!(body["seed"], 42);
    assert_eq!(body["guidance_scale"], 2.5);
    assert_eq!(body["watermark"], false);
    assert_eq!(body["response_format"], "url");
    assert_eq!(body["sequential_image_generation"], "auto");
    assert_eq!(body["sequential_image_generation_options"]["max_images"], 2);
    assert!(body.get("image").is_none(), "no reference image: {body}");
    // The provider's request id is in the task's log; its URLs are not handed out.
    let logs = log_lines(&events);
    assert!(
        logs.iter()
            .any(|l| l.contains("provider ark") && l.contains("request id ark-req-")),
        "{logs:?}"
    );
    assert!(outs.iter().all(|o| !o.key.contains("/files/")));
}

#[tokio::test]
async fn ark_edit_sends_the_source_as_a_data_uri() {
    let server = ForeignServer::start(Speaks::Ark).await;
    let app = app_with(vec![ark_config(&server, "ark")]).await;
    let (_, outs) = app
        .run_ok(edit(&app, "seedream", "make the box blue"))
        .await;
    assert_eq!(outs.len(), 1);
    assert_eq!((outs[0].width, outs[0].height), (320, 240));
    let call = &server.seen_at("/api/v3/images/generations")[0];
    assert_eq!(call.json["image"], jpeg_data_uri().as_str());
    assert_eq!(call.json["prompt"], "make the box blue");
    assert_eq!(call.json["seed"], 11);
    assert_eq!(call.json["size"], "320x240");
    assert_eq!(call.json["sequential_image_generation"], "disabled");
}

#[tokio::test]
async fn ark_pose_set_runs_twelve_shots_three_at_a_time() {
    let server = ForeignServer::start(Speaks::Ark).await;
    let app = app_with(vec![ark_config(&server, "ark")]).await;
    server.hold();
    let run = tokio::spawn({
        let client = app.client.clone();
        let req = pose_set(&app, "seedream");
        async move {
            crate::helpers::collect(
                client
                    .clone()
                    .process(req)
                    .await
                    .expect("accepted")
                    .into_inner(),
            )
            .await
        }
    });
    server.wait_in_flight(3).await;
    assert_eq!(server.in_flight(), 3);
    server.release_all();
    let (events, status) = run.await.expect("joined");
    assert!(status.is_none(), "{status:?}");
    let outs = outputs(&events);
    assert_eq!(outs.len(), 12);
    assert_distinct(&outs);
    assert_eq!(
        server.max_in_flight(),
        3,
        "the default limit of 3 in flight"
    );
    let calls = server.seen_at("/api/v3/images/generations");
    assert_eq!(calls.len(), 12);
    for call in &calls {
        assert_eq!(call.json["image"], jpeg_data_uri().as_str());
        assert!(call.json["prompt"]
            .as_str()
            .is_some_and(|p| p.contains("grey cotton hoodie")));
    }
}

#[tokio::test]
async fn ark_errors_map_to_the_spec_codes() {
    let server = ForeignServer::start(Speaks::Ark).await;
    let app = app_with(vec![ark_config(&server, "ark")]).await;

    server.fail_next(1, Failure::Moderation);
    let refused = app.run_err(generate("seedream", 1, Some(1))).await;
    assert_eq!(refused.code, ErrorCode::ContentRejected, "{refused:?}");
    assert!(!refused.transient);
    assert!(refused
        .message
        .contains("InputTextSensitiveContentDetected"));

    server.fail_next(1, Failure::InvalidParameter);
    let invalid = app.run_err(generate("seedream", 1, Some(2))).await;
    assert_eq!(invalid.code, ErrorCode::InvalidArgument, "{invalid:?}");

    server.fail_next(1, Failure::RateLimited);
    let limited = app.run_err(generate("seedream", 1, Some(3))).await;
    assert_eq!(limited.code, ErrorCode::ModelCallFailed, "{limited:?}");
    assert!(limited.transient, "rate limits are retried");
    assert!(
        limited.message.contains("request id ark-req-"),
        "{limited:?}"
    );

    server.fail_next(1, Failure::ServerError);
    let failed = app.run_err(generate("seedream", 1, Some(4))).await;
    assert_eq!(failed.code, ErrorCode::ModelCallFailed);
    assert!(failed.transient);
}

#[tokio::test]
async fn a_provider_that_rejects_its_key_is_no_longer_offered() {
    let server = ForeignServer::start(Speaks::Ark).await;
    let mut config = ark_config(&server, "ark");
    config.api_key = Some("wrong-key".into());
    let app = app_with(vec![config]).await;
    let caps = app
        .client
        .clone()
        .get_capabilities(v1::GetCapabilitiesRequest {})
        .await
        .expect("caps")
        .into_inner();
    assert!(caps.kinds.contains(&(v1::JobKind::Generate as i32)));

    let rejected = app.run_err(generate("seedream", 1, None)).await;
    assert_eq!(rejected.code, ErrorCode::ModelUnavailable, "{rejected:?}");
    assert!(!rejected.message.contains("wrong-key"), "{rejected:?}");

    let caps = app
        .client
        .clone()
        .get_capabilities(v1::GetCapabilitiesRequest {})
        .await
        .expect("caps")
        .into_inner();
    assert!(
        !caps.kinds.contains(&(v1::JobKind::Generate as i32)),
        "{caps:?}"
    );
    assert!(caps.providers.iter().all(|p| p.name != "ark"), "{caps:?}");
    let calls = server.submissions();
    let again = app.run_err(generate("seedream", 1, Some(9))).await;
    assert_eq!(again.code, ErrorCode::ModelUnavailable);
    assert_eq!(server.submissions(), calls, "not called again");
}

// ---- DashScope ----

#[tokio::test]
async fn dashscope_edit_sends_messages_and_parameters_one_image_at_a_time() {
    let server = ForeignServer::start(Speaks::DashScope).await;
    let app = app_with(vec![dashscope_config(
        &server,
        "dashscope",
        "qwen-image-edit",
    )])
    .await;
    let (events, outs) = app
        .run_ok(edit(&app, "qwen-image-edit", "make it blue"))
        .await;
    assert_eq!(outs.len(), 1);
    assert_eq!((outs[0].width, outs[0].height), (320, 240));
    let calls = server.seen_at("/api/v1/services/aigc/multimodal-generation/generation");
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        call.header("authorization"),
        Some(format!("Bearer {}", foreign::KEY).as_str())
    );
    assert_eq!(call.header("x-dashscope-async"), None);
    let body = &call.json;
    assert_eq!(body["model"], "qwen-image-edit");
    let message = &body["input"]["messages"][0];
    assert_eq!(message["role"], "user");
    assert_eq!(message["content"][0]["image"], jpeg_data_uri().as_str());
    assert_eq!(message["content"][1]["text"], "make it blue");
    let parameters = &body["parameters"];
    assert_eq!(parameters["n"], 1);
    assert_eq!(parameters["negative_prompt"], "blurry");
    assert_eq!(parameters["size"], "320*240");
    assert_eq!(parameters["seed"], 11);
    assert_eq!(parameters["watermark"], false);
    assert_eq!(parameters["prompt_extend"], false);
    let logs = log_lines(&events);
    assert!(
        logs.iter().any(|l| l.contains("request id ds-req-")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn dashscope_async_models_create_a_task_and_poll_it() {
    let server = ForeignServer::start(Speaks::DashScope).await;
    server.set_running_polls(3);
    let mut config = dashscope_config(&server, "dashscope", "wan2.2-t2i-flash");
    config.async_models = vec!["wan2.2-t2i-flash".into()];
    let app = app_with(vec![config]).await;
    let (events, outs) = app.run_ok(generate("wan2.2-t2i-flash", 2, Some(5))).await;
    assert_eq!(outs.len(), 2);
    assert!(outs.iter().all(|o| (o.width, o.height) == (512, 384)));
    let created = server.seen_at("/api/v1/services/aigc/text2image/image-synthesis");
    assert_eq!(created.len(), 1);
    let call = &created[0];
    assert_eq!(call.header("x-dashscope-async"), Some("enable"));
    assert_eq!(call.json["model"], "wan2.2-t2i-flash");
    assert_eq!(call.json["input"]["prompt"], "a red sneaker on white");
    assert_eq!(call.json["input"]["negative_prompt"], "text");
    assert_eq!(call.json["parameters"]["size"], "512*384");
    assert_eq!(call.json["parameters"]["n"], 2);
    assert_eq!(call.json["parameters"]["seed"], 5);
    assert_eq!(server.polls(), 4, "three RUNNING answers, then SUCCEEDED");
    let polls: Vec<_> = server
        .seen()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/api/v1/tasks/task-"))
        .collect();
    assert_eq!(polls.len(), 4);
    let logs = log_lines(&events);
    assert!(
        logs.iter().any(|l| l.contains("request id task-")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn dashscope_async_edits_use_the_image_to_image_task() {
    let server = ForeignServer::start(Speaks::DashScope).await;
    let mut config = dashscope_config(&server, "dashscope", "wanx2.1-imageedit");
    config.async_models = vec!["wanx2.1-imageedit".into()];
    let app = app_with(vec![config]).await;
    let (_, outs) = app
        .run_ok(edit(&app, "wanx2.1-imageedit", "make it red"))
        .await;
    assert_eq!(outs.len(), 1);
    let call = &server.seen_at("/api/v1/services/aigc/image2image/image-synthesis")[0];
    assert_eq!(call.json["input"]["function"], "description_edit");
    assert_eq!(call.json["input"]["prompt"], "make it red");
    assert_eq!(
        call.json["input"]["base_image_url"],
        jpeg_data_uri().as_str()
    );
}

#[tokio::test]
async fn dashscope_pose_set_keeps_at_most_three_in_flight() {
    let server = ForeignServer::start(Speaks::DashScope).await;
    let app = app_with(vec![dashscope_config(
        &server,
        "dashscope",
        "qwen-image-edit",
    )])
    .await;
    server.hold();
    let run = tokio::spawn({
        let client = app.client.clone();
        let req = pose_set(&app, "qwen-image-edit");
        async move {
            crate::helpers::collect(
                client
                    .clone()
                    .process(req)
                    .await
                    .expect("accepted")
                    .into_inner(),
            )
            .await
        }
    });
    server.wait_in_flight(3).await;
    server.release_all();
    let (events, status) = run.await.expect("joined");
    assert!(status.is_none(), "{status:?}");
    assert_eq!(outputs(&events).len(), 12);
    assert_eq!(server.max_in_flight(), 3);
    let calls = server.seen_at("/api/v1/services/aigc/multimodal-generation/generation");
    assert_eq!(calls.len(), 12);
    assert!(calls.iter().all(|c| c.json["parameters"]["n"] == 1));
}

#[tokio::test]
async fn dashscope_errors_map_to_the_spec_codes() {
    let server = ForeignServer::start(Speaks::DashScope).await;
    let app = app_with(vec![dashscope_config(&server, "dashscope", "qwen-image")]).await;
    server.fail_next(1, Failure::Moderation);
    let refused = app.run_err(generate("qwen-image", 1, Some(1))).await;
    assert_eq!(refused.code, ErrorCode::ContentRejected, "{refused:?}");
    assert!(refused.message.contains("DataInspectionFailed"));
    server.fail_next(1, Failure::InvalidParameter);
    let invalid = app.run_err(generate("qwen-image", 1, Some(2))).await;
    assert_eq!(invalid.code, ErrorCode::InvalidArgument, "{invalid:?}");
    server.fail_next(1, Failure::RateLimited);
    let limited = app.run_err(generate("qwen-image", 1, Some(3))).await;
    assert_eq!(limited.code, ErrorCode::ModelCallFailed);
    assert!(limited.transient);
    assert!(
        limited.message.contains("Throttling.RateQuota"),
        "{limited:?}"
    );
    server.fail_next(1, Failure::BadKey);
    let key = app.run_err(generate("qwen-image", 1, Some(4))).await;
    assert_eq!(key.code, ErrorCode::ModelUnavailable, "{key:?}");
}

// ---- RunningHub ----

#[tokio::test]
async fn runninghub_pose_set_uploads_the_source_and_takes_twelve_shots_from_one_run() {
    let server = ForeignServer::start(Speaks::RunningHub).await;
    server.set_images_per_run(12);
    let app = app_with(vec![runninghub_config(&server, 12)]).await;
    let (events, outs) = app.run_ok(pose_set(&app, "model_pose12")).await;
    assert_eq!(outs.len(), 12);
    assert_distinct(&outs);
    let mut names: Vec<&str> = outs.iter().map(|o| o.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names[0], "shot-01-front.png");
    assert_eq!(completed(&events).failed_units, 0);

    let uploads = server.seen_at("/task/openapi/upload");
    assert_eq!(uploads.len(), 1);
    assert_eq!(uploads[0].json["apiKey"], foreign::KEY);
    assert_eq!(uploads[0].json["fileType"], "image");
    assert_eq!(uploads[0].file.as_deref(), Some(images::jpeg().as_slice()));
    let created = server.seen_at("/task/openapi/create");
    assert_eq!(created.len(), 1, "one run for the whole set");
    let body = &created[0].json;
    assert_eq!(body["apiKey"], foreign::KEY);
    assert_eq!(body["workflowId"], "1950000000000000001");
    let nodes = body["nodeInfoList"].as_array().expect("nodeInfoList");
    assert_eq!(nodes[0]["nodeId"], "12");
    assert_eq!(nodes[0]["fieldName"], "image");
    assert!(nodes[0]["fieldValue"]
        .as_str()
        .is_some_and(|v| v.starts_with("api/") && v.ends_with(".png")));
    assert_eq!(nodes[1]["nodeId"], "6");
    assert_eq!(nodes[1]["fieldName"], "text");
    assert!(nodes[1]["fieldValue"]
        .as_str()
        .is_some_and(|p| p.contains("grey cotton hoodie")));
    assert_eq!(nodes.len(), 2, "no seed node without a seed");
    let statuses = server.seen_at("/task/openapi/status");
    assert_eq!(statuses.len(), 3, "RUNNING twice, then SUCCESS");
    assert!(statuses
        .iter()
        .all(|s| s.json["taskId"] == created_task(&server)));
    assert_eq!(server.seen_at("/task/openapi/outputs").len(), 1);
}

fn created_task(server: &ForeignServer) -> String {
    server
        .seen_at("/task/openapi/status")
        .first()
        .and_then(|s| s.json["taskId"].as_str().map(str::to_string))
        .expect("a polled task")
}

#[tokio::test]
async fn runninghub_generate_and_edit_fill_the_prompt_and_seed_nodes() {
    let server = ForeignServer::start(Speaks::RunningHub).await;
    let app = app_with(vec![runninghub_config(&server, 1)]).await;
    let (_, outs) = app.run_ok(generate("model_pose12", 1, Some(77))).await;
    assert_eq!(outs.len(), 1);
    assert!(
        server.seen_at("/task/openapi/upload").is_empty(),
        "nothing to upload"
    );
    let body = &server.seen_at("/task/openapi/create")[0].json;
    let nodes = body["nodeInfoList"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0]["fieldValue"], "a red sneaker on white");
    assert_eq!(
        (
            &nodes[1]["nodeId"],
            &nodes[1]["fieldName"],
            &nodes[1]["fieldValue"]
        ),
        (&"3".into(), &"seed".into(), &77.into())
    );

    let (_, outs) = app
        .run_ok(edit(&app, "model_pose12", "make it green"))
        .await;
    assert_eq!(outs.len(), 1);
    assert_eq!(server.seen_at("/task/openapi/upload").len(), 1);
    let body = &server.seen_at("/task/openapi/create")[1].json;
    let nodes = body["nodeInfoList"].as_array().expect("nodes");
    assert_eq!(nodes[0]["fieldName"], "image");
    assert_eq!(nodes[1]["fieldValue"], "make it green");
    assert_eq!(nodes[2]["fieldValue"], 11);
}

#[tokio::test]
async fn runninghub_pose_set_by_single_runs_makes_twelve_runs() {
    let server = ForeignServer::start(Speaks::RunningHub).await;
    let app = app_with(vec![runninghub_config(&server, 1)]).await;
    let (_, outs) = app.run_ok(pose_set(&app, "model_pose12")).await;
    assert_eq!(outs.len(), 12);
    assert_eq!(server.seen_at("/task/openapi/create").len(), 12);
    assert_eq!(server.seen_at("/task/openapi/outputs").len(), 12);
}

#[tokio::test]
async fn runninghub_errors_map_to_the_spec_codes() {
    let server = ForeignServer::start(Speaks::RunningHub).await;
    let app = app_with(vec![runninghub_config(&server, 1)]).await;
    server.fail_next(1, Failure::RateLimited);
    let limited = app.run_err(generate("model_pose12", 1, Some(1))).await;
    assert_eq!(limited.code, ErrorCode::ModelCallFailed);
    assert!(limited.transient);
    assert!(limited.message.contains("TASK_QUEUE_MAXED"), "{limited:?}");
    server.fail_next(1, Failure::InvalidParameter);
    let invalid = app.run_err(generate("model_pose12", 1, Some(2))).await;
    assert_eq!(invalid.code, ErrorCode::InvalidArgument, "{invalid:?}");
    server.fail_next(1, Failure::BadKey);
    let key = app.run_err(generate("model_pose12", 1, Some(3))).await;
    assert_eq!(key.code, ErrorCode::ModelUnavailable, "{key:?}");
}

// ---- Routing and cost ----

#[tokio::test]
async fn a_failing_provider_falls_back_to_the_next_within_one_attempt() {
    let ark = ForeignServer::start(Speaks::Ark).await;
    let dashscope = ForeignServer::start(Speaks::DashScope).await;
    let mut second = dashscope_config(&dashscope, "dashscope", "seedream");
    second
        .upstream_models
        .insert("seedream".into(), "qwen-image".into());
    let app = app_with(vec![ark_config(&ark, "ark"), second]).await;
    ark.fail_next(1, Failure::ServerError);
    let (events, outs) = app.run_ok(generate("seedream", 1, Some(8))).await;
    assert_eq!(outs.len(), 1);
    assert_eq!(ark.submissions(), 1, "the first provider was tried");
    let calls = dashscope.seen_at("/api/v1/services/aigc/multimodal-generation/generation");
    assert_eq!(calls.len(), 1, "then the second");
    assert_eq!(calls[0].json["model"], "qwen-image");
    let logs = log_lines(&events);
    assert!(
        logs.iter().any(|l| l.starts_with("warn:")
            && l.contains("InternalServiceError")
            && l.contains("trying provider dashscope")),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.contains("provider dashscope answered")),
        "{logs:?}"
    );

    // Not retryable: a refusal is final, the second provider is not asked.
    ark.fail_next(1, Failure::Moderation);
    let refused = app.run_err(generate("seedream", 1, Some(9))).await;
    assert_eq!(refused.code, ErrorCode::ContentRejected);
    assert_eq!(
        dashscope
            .seen_at("/api/v1/services/aigc/multimodal-generation/generation")
            .len(),
        1
    );

    // Usage is counted per tenant, account, provider and model, failures included.
    let series = |name: &str, provider: &str| {
        format!(
            "atelier_processor_provider_usage_{name}{{tenant=\"tenant-1\",account=\"shop\",provider=\"{provider}\",model=\"seedream\"}}"
        )
    };
    assert_eq!(app.metric(&series("calls_total", "ark")).await, 2.0);
    assert_eq!(app.metric(&series("failures_total", "ark")).await, 2.0);
    assert_eq!(app.metric(&series("images_total", "ark")).await, 0.0);
    assert_eq!(app.metric(&series("calls_total", "dashscope")).await, 1.0);
    assert_eq!(app.metric(&series("images_total", "dashscope")).await, 1.0);
    assert_eq!(
        app.metric(&series("failures_total", "dashscope")).await,
        0.0
    );
    assert!(app.metric(&series("seconds_total", "dashscope")).await > 0.0);
}

#[tokio::test]
async fn requests_per_minute_space_the_calls_the_server_sees() {
    let server = ForeignServer::start(Speaks::Ark).await;
    let mut config = ark_config(&server, "ark");
    // 240 a minute: 4 a second, a bucket of 4.
    config.requests_per_minute = Some(240);
    config.max_concurrency = 12;
    let app = app_with(vec![config]).await;
    let (_, outs) = app.run_ok(pose_set(&app, "seedream")).await;
    assert_eq!(outs.len(), 12, "waiting for a token is not an error");
    let times = server.submission_times();
    assert_eq!(times.len(), 12);
    let first = times[0];
    let tolerance = Duration::from_millis(100);
    for (k, at) in times.iter().enumerate().skip(4) {
        let earliest = Duration::from_millis(250) * u32::try_from(k - 3).expect("small");
        assert!(
            at.duration_since(first) + tolerance >= earliest,
            "call {k} arrived {:?} after the first, before {earliest:?}",
            at.duration_since(first)
        );
    }
}

#[tokio::test]
async fn keys_are_not_logged_or_reported() {
    let server = ForeignServer::start(Speaks::DashScope).await;
    let app = app_with(vec![dashscope_config(&server, "dashscope", "qwen-image")]).await;
    let (events, _) = app.run_ok(generate("qwen-image", 1, Some(1))).await;
    let printed = format!("{events:?}");
    assert!(!printed.contains(foreign::KEY));
    let metrics = app.metrics().await;
    assert!(!metrics.contains(foreign::KEY));
    assert_ne!(TOKEN, foreign::KEY);
}

#[tokio::test]
async fn a_task_that_never_finishes_times_out_and_falls_back() {
    let slow = ForeignServer::start(Speaks::DashScope).await;
    slow.set_running_polls(u32::MAX);
    let mut first = dashscope_config(&slow, "slow", "wan2.2-t2i-flash");
    first.async_models = vec!["wan2.2-t2i-flash".into()];
    first.timeout_seconds = 0.3;
    let ark = ForeignServer::start(Speaks::Ark).await;
    let mut second = ark_config(&ark, "ark");
    second.models[0].id = "wan2.2-t2i-flash".into();
    second.upstream_models.clear();
    let app = app_with(vec![first.clone()]).await;
    let timed_out = app.run_err(generate("wan2.2-t2i-flash", 1, Some(1))).await;
    assert_eq!(timed_out.code, ErrorCode::ModelCallFailed, "{timed_out:?}");
    assert!(timed_out.transient, "a timeout is retried");
    assert!(
        timed_out.message.contains("did not answer within"),
        "{timed_out:?}"
    );
    assert!(slow.polls() >= 2, "it was polled until the timeout");

    let app = app_with(vec![first, second]).await;
    let (events, outs) = app.run_ok(generate("wan2.2-t2i-flash", 1, Some(2))).await;
    assert_eq!(outs.len(), 1);
    assert_eq!(ark.submissions(), 1);
    let logs = log_lines(&events);
    assert!(
        logs.iter()
            .any(|l| l.contains("did not answer within") && l.contains("trying provider ark")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn ark_answers_by_url_are_downloaded_and_b64_answers_are_not() {
    let server = ForeignServer::start(Speaks::Ark).await;
    let app = app_with(vec![ark_config(&server, "ark")]).await;
    let (_, outs) = app.run_ok(generate("seedream", 2, Some(1))).await;
    assert_eq!(outs.len(), 2);
    assert_eq!(server.downloads(), 2, "both URLs fetched by the processor");

    let inline = ForeignServer::start(Speaks::Ark).await;
    let mut config = ark_config(&inline, "ark");
    config.response_format = Some("b64_json".into());
    let app = app_with(vec![config]).await;
    let (_, outs) = app.run_ok(generate("seedream", 2, Some(1))).await;
    assert_eq!(outs.len(), 2);
    assert_distinct(&outs);
    let call = &inline.seen_at("/api/v3/images/generations")[0];
    assert_eq!(call.json["response_format"], "b64_json");
    assert_eq!(inline.downloads(), 0, "the images came in the answer");
}

/// `(provider, model, calls, images, failures)` of the attempt's usage events, seconds checked.
fn usage_events(events: &[Event]) -> Vec<(String, String, u64, u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Usage(u) => {
                assert!(u.seconds > 0.0, "{u:?}");
                Some((
                    u.provider.clone(),
                    u.model.clone(),
                    u.calls,
                    u.images,
                    u.failures,
                ))
            }
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn each_attempt_reports_its_usage_before_it_ends_failed_or_not() {
    let server = ForeignServer::start(Speaks::Ark).await;
    let app = app_with(vec![ark_config(&server, "ark")]).await;

    // Success: the usage comes right before Completed.
    let (events, failure) = app.run(generate("seedream", 2, Some(1))).await;
    assert!(failure.is_none(), "{failure:?}");
    let n = events.len();
    assert!(matches!(events[n - 1], Event::Completed(_)), "{events:?}");
    assert!(matches!(events[n - 2], Event::Usage(_)), "{events:?}");
    assert_eq!(
        usage_events(&events),
        vec![("ark".into(), "seedream".into(), 1, 2, 0)]
    );

    // Failure: the usage comes before the error status ends the stream.
    server.fail_next(1, Failure::Moderation);
    let (events, failure) = app.run(generate("seedream", 1, Some(2))).await;
    let failure = failure.expect("the attempt fails");
    assert_eq!(failure.code, ErrorCode::ContentRejected, "{failure:?}");
    assert!(matches!(events.last(), Some(Event::Usage(_))), "{events:?}");
    assert_eq!(
        usage_events(&events),
        vec![("ark".into(), "seedream".into(), 1, 0, 1)]
    );
}
