//! The seeds' own providers end to end: jobs submitted to the orchestrator run on a real processor
//! configured with VolcEngine Ark, DashScope and RunningHub, each a local server speaking that
//! provider's protocol; a failing provider falls back to a second within one attempt; provider
//! request ids reach the job's log and usage is counted per tenant, account, provider and model.

use atelier_processor::providers::{NodeField, WorkflowConfig};
use atelier_processor::{ModelConfig, ModelKind, Protocol, ProviderConfig};
use atelier_proto::v1 as pb;
use atelier_testkit::foreign::{self, Failure, ForeignServer, Speaks};

use crate::helpers::*;
use crate::on_both_databases;

fn provider(
    name: &str,
    protocol: Protocol,
    server: &ForeignServer,
    id: &str,
    kinds: &[ModelKind],
) -> ProviderConfig {
    let mut config = ProviderConfig::with_protocol(
        name,
        protocol,
        &server.base_url(),
        Some(foreign::KEY),
        vec![ModelConfig {
            id: id.into(),
            kinds: kinds.to_vec(),
        }],
    );
    config.poll_interval_ms = 5;
    config
}

struct Servers {
    ark: ForeignServer,
    dashscope: ForeignServer,
    runninghub: ForeignServer,
}

async fn spawn(backend: Backend) -> (TestApp, Servers) {
    let servers = Servers {
        ark: ForeignServer::start(Speaks::Ark).await,
        dashscope: ForeignServer::start(Speaks::DashScope).await,
        runninghub: ForeignServer::start(Speaks::RunningHub).await,
    };
    servers.runninghub.set_images_per_run(12);
    let all = [ModelKind::Generate, ModelKind::Edit, ModelKind::PoseSet];
    let mut ark = provider("ark", Protocol::Ark, &servers.ark, "seedream", &all);
    ark.upstream_models
        .insert("seedream".into(), "doubao-seedream-4-0-250828".into());
    let dashscope = provider(
        "dashscope",
        Protocol::DashScope,
        &servers.dashscope,
        "qwen-image-edit",
        &[ModelKind::Edit, ModelKind::PoseSet],
    );
    // A second provider of `seedream`, tried when Ark fails.
    let mut backup = provider(
        "dashscope-backup",
        Protocol::DashScope,
        &servers.dashscope,
        "seedream",
        &all,
    );
    backup
        .upstream_models
        .insert("seedream".into(), "qwen-image".into());
    let mut runninghub = provider(
        "runninghub",
        Protocol::RunningHub,
        &servers.runninghub,
        "model_pose12",
        &[ModelKind::PoseSet],
    );
    runninghub.workflows = vec![WorkflowConfig {
        model: "model_pose12".into(),
        workflow_id: "1950000000000000012".into(),
        image_node: Some(NodeField {
            node_id: "12".into(),
            field_name: "image".into(),
        }),
        prompt_node: Some(NodeField {
            node_id: "6".into(),
            field_name: "text".into(),
        }),
        seed_node: None,
        images_per_run: 12,
    }];
    let app = spawn_app_with(
        backend,
        |_| {},
        move |p| p.providers = vec![ark, dashscope, backup, runninghub],
    )
    .await;
    (app, servers)
}

fn job(params: pb::job_params::Params, sources: Vec<pb::Source>) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        params: Some(pb::JobParams {
            params: Some(params),
        }),
        sources,
        ..Default::default()
    }
}

fn generate(seed: i64) -> pb::SubmitJobRequest {
    job(
        pb::job_params::Params::Generate(pb::GenerateParams {
            prompt: "a red sneaker on white".into(),
            model: "seedream".into(),
            width: 256,
            height: 256,
            num_images: 2,
            seed: Some(seed),
            ..Default::default()
        }),
        Vec::new(),
    )
}

fn pose_set(app: &TestApp, model: &str) -> pb::SubmitJobRequest {
    job(
        pb::job_params::Params::PoseSet(pb::PoseSetParams {
            scene: pb::Scene::Street as i32,
            category: "shoes".into(),
            description: "white leather sneakers".into(),
            model: model.into(),
        }),
        vec![url_source(&app.sources.url("/image.jpg"))],
    )
}

fn edit(app: &TestApp, model: &str) -> pb::SubmitJobRequest {
    job(
        pb::job_params::Params::Edit(pb::EditParams {
            prompt: "make the box blue".into(),
            model: model.into(),
            num_images: 1,
            ..Default::default()
        }),
        vec![url_source(&app.sources.url("/image.jpg"))],
    )
}

async fn logs(app: &TestApp, tenant: &Tenant, job_id: &str) -> Vec<String> {
    let page = app
        .jobs
        .clone()
        .list_job_logs(as_account(
            pb::ListJobLogsRequest {
                job_id: job_id.into(),
                page_size: 200,
                page_token: String::new(),
            },
            &tenant.key,
            "shop",
        ))
        .await
        .expect("logs")
        .into_inner();
    page.entries
        .into_iter()
        .filter_map(|e| e.line)
        .map(|l| format!("{}/{}: {}", l.origin, l.level, l.message))
        .collect()
}

async fn processor_metric(app: &TestApp, series: &str) -> f64 {
    let url = format!("http://{}/metrics", app.processor.metrics_addr());
    let text = reqwest::get(&url)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

async fn every_provider_serves_generate_edit_and_pose_set(backend: Backend) {
    let (app, servers) = spawn(backend).await;
    let tenant = app.tenant("seeds").await;
    app.member(&tenant, "shop", 100).await;
    let models = app
        .jobs
        .clone()
        .list_models(bearer(pb::ListModelsRequest {}, &tenant.key))
        .await
        .expect("models")
        .into_inner()
        .models;
    let mut listed: Vec<(String, String)> = models
        .iter()
        .map(|m| (m.id.clone(), m.provider.clone()))
        .collect();
    listed.sort();
    assert!(
        listed.contains(&("seedream".into(), "ark".into())),
        "{listed:?}"
    );
    assert!(listed.contains(&("qwen-image-edit".into(), "dashscope".into())));
    assert!(listed.contains(&("model_pose12".into(), "runninghub".into())));

    // Ark: generate a set of two.
    let submitted = app
        .submit(&tenant, "shop", generate(1))
        .await
        .expect("submit");
    let done = app.finish(&tenant, "shop", &submitted.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    assert_eq!(done.tasks[0].outputs.len(), 2);
    let call = &servers.ark.seen_at("/api/v3/images/generations")[0];
    assert_eq!(call.json["model"], "doubao-seedream-4-0-250828");
    assert_eq!(
        call.json["sequential_image_generation_options"]["max_images"],
        2
    );
    let lines = logs(&app, &tenant, &submitted.id).await;
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("processor/info") && l.contains("request id ark-req-")),
        "{lines:?}"
    );

    // DashScope: an edit.
    let submitted = app
        .submit(&tenant, "shop", edit(&app, "qwen-image-edit"))
        .await
        .expect("submit");
    let done = app.finish(&tenant, "shop", &submitted.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    assert_eq!(done.tasks[0].outputs.len(), 1);
    let calls = servers
        .dashscope
        .seen_at("/api/v1/services/aigc/multimodal-generation/generation");
    assert_eq!(calls[0].json["model"], "qwen-image-edit");
    assert_eq!(
        calls[0].json["input"]["messages"][0]["content"][1]["text"],
        "make the box blue"
    );

    // RunningHub: a pose set from one workflow run.
    let submitted = app
        .submit(&tenant, "shop", pose_set(&app, "model_pose12"))
        .await
        .expect("submit");
    assert_eq!(submitted.cost, 12);
    let done = app.finish(&tenant, "shop", &submitted.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    assert_eq!(done.tasks[0].outputs.len(), 12);
    assert_eq!(servers.runninghub.seen_at("/task/openapi/create").len(), 1);
    assert_eq!(servers.runninghub.seen_at("/task/openapi/upload").len(), 1);

    // Ark and DashScope pose sets: twelve calls each.
    for (model, path, server) in [
        ("seedream", "/api/v3/images/generations", &servers.ark),
        (
            "qwen-image-edit",
            "/api/v1/services/aigc/multimodal-generation/generation",
            &servers.dashscope,
        ),
    ] {
        let before = server.seen_at(path).len();
        let submitted = app
            .submit(&tenant, "shop", pose_set(&app, model))
            .await
            .expect("submit");
        let done = app.finish(&tenant, "shop", &submitted.id).await;
        assert_eq!(done.state(), pb::JobState::Succeeded, "{model}: {done:?}");
        assert_eq!(done.tasks[0].outputs.len(), 12);
        assert_eq!(server.seen_at(path).len() - before, 12, "{model}");
        assert!(server.max_in_flight() <= 3, "{model}");
    }
    assert_eq!(
        app.account(&tenant, "shop").await.balance,
        100 - 2 - 1 - 12 * 3
    );

    // Usage per tenant, account, provider and model.
    let series = |name: &str, provider: &str, model: &str| {
        format!(
            "atelier_processor_provider_usage_{name}{{tenant=\"{}\",account=\"shop\",provider=\"{provider}\",model=\"{model}\"}}",
            tenant.id
        )
    };
    assert_eq!(
        processor_metric(&app, &series("calls_total", "ark", "seedream")).await,
        13.0
    );
    assert_eq!(
        processor_metric(&app, &series("images_total", "ark", "seedream")).await,
        14.0
    );
    assert_eq!(
        processor_metric(&app, &series("calls_total", "runninghub", "model_pose12")).await,
        1.0
    );
    assert_eq!(
        processor_metric(&app, &series("images_total", "runninghub", "model_pose12")).await,
        12.0
    );
    assert_eq!(
        processor_metric(&app, &series("calls_total", "dashscope", "qwen-image-edit")).await,
        13.0
    );
}

async fn a_failing_provider_falls_back_without_spending_the_attempt(backend: Backend) {
    let (app, servers) = spawn(backend).await;
    let tenant = app.tenant("fallback").await;
    app.member(&tenant, "shop", 10).await;
    servers.ark.fail_next(1, Failure::RateLimited);
    let submitted = app
        .submit(&tenant, "shop", generate(2))
        .await
        .expect("submit");
    let done = app.finish(&tenant, "shop", &submitted.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    assert_eq!(
        done.tasks[0].attempts, 1,
        "one attempt: the fallback is inside it"
    );
    assert_eq!(done.tasks[0].outputs.len(), 2);
    assert_eq!(servers.ark.submissions(), 1);
    let backup = servers
        .dashscope
        .seen_at("/api/v1/services/aigc/multimodal-generation/generation");
    assert_eq!(backup.len(), 1);
    assert_eq!(backup[0].json["model"], "qwen-image");
    assert_eq!(backup[0].json["parameters"]["n"], 2);
    let lines = logs(&app, &tenant, &submitted.id).await;
    assert!(
        lines.iter().any(|l| l.starts_with("processor/warn")
            && l.contains("RateLimitExceeded")
            && l.contains("trying provider dashscope-backup")),
        "{lines:?}"
    );
    let failures = format!(
        "atelier_processor_provider_usage_failures_total{{tenant=\"{}\",account=\"shop\",provider=\"ark\",model=\"seedream\"}}",
        tenant.id
    );
    assert_eq!(processor_metric(&app, &failures).await, 1.0);
}

async fn stats(app: &TestApp, request: tonic::Request<pb::GetStatsRequest>) -> pb::Stats {
    app.jobs
        .clone()
        .get_stats(request)
        .await
        .expect("stats")
        .into_inner()
}

/// `(provider, model, calls, images, failures)` of each entry, with its seconds checked positive.
fn usage_of(stats: &pb::Stats) -> Vec<(String, String, u64, u64, u64)> {
    stats
        .provider_usage
        .iter()
        .map(|u| {
            assert!(u.seconds > 0.0, "{u:?}");
            (
                u.provider.clone(),
                u.model.clone(),
                u.calls,
                u.images,
                u.failures,
            )
        })
        .collect()
}

fn entry(
    provider: &str,
    model: &str,
    calls: u64,
    images: u64,
    failures: u64,
) -> (String, String, u64, u64, u64) {
    (provider.into(), model.into(), calls, images, failures)
}

async fn get_stats_shows_each_accounts_provider_usage_fallbacks_and_failed_attempts_included(
    backend: Backend,
) {
    let (app, servers) = spawn(backend).await;
    let tenant = app.tenant("spend").await;
    app.member(&tenant, "shop", 20).await;
    app.member(&tenant, "other", 20).await;
    app.member(&tenant, "idle", 20).await;

    // Ark is throttled once: the backup answers within the same attempt.
    servers.ark.fail_next(1, Failure::RateLimited);
    let submitted = app
        .submit(&tenant, "shop", generate(5))
        .await
        .expect("submit");
    let done = app.finish(&tenant, "shop", &submitted.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");
    // Ark refuses a parameter: no fallback, the attempt and the job fail, and the call still counts.
    servers.ark.fail_next(1, Failure::InvalidParameter);
    let submitted = app
        .submit(&tenant, "shop", edit(&app, "seedream"))
        .await
        .expect("submit");
    let done = app.finish(&tenant, "shop", &submitted.id).await;
    assert_eq!(done.state(), pb::JobState::Failed, "{done:?}");
    assert_eq!(done.tasks[0].attempts, 1, "{done:?}");
    assert_eq!(servers.ark.submissions(), 2);
    // Another account's edit on DashScope.
    let submitted = app
        .submit(&tenant, "other", edit(&app, "qwen-image-edit"))
        .await
        .expect("submit");
    let done = app.finish(&tenant, "other", &submitted.id).await;
    assert_eq!(done.state(), pb::JobState::Succeeded, "{done:?}");

    let shop = stats(
        &app,
        as_account(pb::GetStatsRequest::default(), &tenant.key, "shop"),
    )
    .await;
    assert_eq!(
        usage_of(&shop),
        vec![
            entry("ark", "seedream", 2, 0, 2),
            entry("dashscope-backup", "seedream", 1, 2, 0),
        ]
    );
    let other = stats(
        &app,
        as_account(pb::GetStatsRequest::default(), &tenant.key, "other"),
    )
    .await;
    assert_eq!(
        usage_of(&other),
        vec![entry("dashscope", "qwen-image-edit", 1, 1, 0)]
    );
    let idle = stats(
        &app,
        as_account(pb::GetStatsRequest::default(), &tenant.key, "idle"),
    )
    .await;
    assert!(idle.provider_usage.is_empty(), "{idle:?}");
    // The tenant-wide key sees every account's.
    let everyone = stats(&app, bearer(pb::GetStatsRequest::default(), &tenant.key)).await;
    assert_eq!(
        usage_of(&everyone),
        vec![
            entry("ark", "seedream", 2, 0, 2),
            entry("dashscope", "qwen-image-edit", 1, 1, 0),
            entry("dashscope-backup", "seedream", 1, 2, 0),
        ]
    );
    // Another tenant sees none of it.
    let stranger = app.tenant("stranger").await;
    let theirs = stats(&app, bearer(pb::GetStatsRequest::default(), &stranger.key)).await;
    assert!(theirs.provider_usage.is_empty(), "{theirs:?}");
    // The range is the jobs' creation time, as for the other numbers.
    let later = pb::TimeRange {
        start: Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() + 3600,
            nanos: 0,
        }),
        end: None,
    };
    let none = stats(
        &app,
        as_account(
            pb::GetStatsRequest { range: Some(later) },
            &tenant.key,
            "shop",
        ),
    )
    .await;
    assert!(none.provider_usage.is_empty(), "{none:?}");
}

async fn a_provider_that_rejects_its_key_is_refused_at_submit_afterwards(backend: Backend) {
    let ark = ForeignServer::start(Speaks::Ark).await;
    let mut config = provider(
        "ark",
        Protocol::Ark,
        &ark,
        "seedream",
        &[ModelKind::Generate],
    );
    config.api_key = Some("not-the-key".into());
    let app = spawn_app_with(backend, |_| {}, move |p| p.providers = vec![config]).await;
    let tenant = app.tenant("badkey").await;
    app.member(&tenant, "shop", 10).await;
    // Offered until the provider is first called.
    let submitted = app
        .submit(&tenant, "shop", generate(3))
        .await
        .expect("submit");
    let done = app.finish(&tenant, "shop", &submitted.id).await;
    assert_eq!(done.state(), pb::JobState::Failed, "{done:?}");
    let failure = done.tasks[0].failure.as_ref().expect("failure");
    assert_eq!(failure.code, 3006, "{failure:?}");
    assert!(
        failure.message.contains("AuthenticationError"),
        "{failure:?}"
    );
    assert!(!failure.message.contains("not-the-key"));
    assert_eq!(ark.submissions(), 1);
    assert_eq!(app.account(&tenant, "shop").await.balance, 10, "refunded");
    // Then the kind only it served is refused at submit, and the provider is not called again.
    let refused = app
        .submit(&tenant, "shop", generate(4))
        .await
        .expect_err("no provider of generate");
    assert_eq!(code_of(&refused), 3006);
    assert_eq!(ark.submissions(), 1);
}

on_both_databases!(
    every_provider_serves_generate_edit_and_pose_set,
    a_failing_provider_falls_back_without_spending_the_attempt,
    a_provider_that_rejects_its_key_is_refused_at_submit_afterwards,
    get_stats_shows_each_accounts_provider_usage_fallbacks_and_failed_attempts_included,
);
