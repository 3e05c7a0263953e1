//! Model kinds end to end through a real processor and a local server speaking the OpenAI Images API:
//! 3006 at submit when no processor offers the kind or model, ListModels from capabilities, pose sets
//! that keep their good shots and refund the failed ones, and the content cache refunding hits.

use atelier_processor::{ModelConfig, ModelKind, ProviderConfig};
use atelier_proto::v1 as pb;
use atelier_testkit::provider::{self, ProviderServer};

use crate::helpers::*;
use crate::on_both_databases;

pub(crate) const MODEL: &str = "test-image-1";

/// A stack whose processor has the fake provider, serving [`MODEL`] for edit, generate and pose sets.
pub(crate) async fn spawn_with_provider(backend: Backend, provider: &ProviderServer) -> TestApp {
    let base_url = provider.base_url();
    spawn_app_with(
        backend,
        |_| {},
        move |p| {
            p.providers = vec![ProviderConfig::new(
                "fake",
                &base_url,
                Some(provider::API_KEY),
                vec![ModelConfig {
                    id: MODEL.into(),
                    kinds: vec![ModelKind::Edit, ModelKind::Generate, ModelKind::PoseSet],
                }],
            )];
        },
    )
    .await
}

fn generate(model: &str, images: u32, seed: Option<i64>) -> pb::SubmitJobRequest {
    pb::SubmitJobRequest {
        params: Some(pb::JobParams {
            params: Some(pb::job_params::Params::Generate(pb::GenerateParams {
                prompt: "a red  sneaker\non white".into(),
                model: model.into(),
                width: 256,
                height: 256,
                num_images: images,
                seed,
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

async fn model_kinds_without_a_provider_fail_at_submit(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.tenant("plain").await;
    app.member(&tenant, "shop", 10).await;
    let refused = app
        .submit(&tenant, "shop", generate("", 1, None))
        .await
        .expect_err("no provider");
    assert_eq!(code_of(&refused), 3006);
    let models = app
        .jobs
        .clone()
        .list_models(bearer(pb::ListModelsRequest {}, &tenant.key))
        .await
        .expect("models")
        .into_inner();
    assert!(models.models.is_empty());
    assert_eq!(
        app.account(&tenant, "shop").await.balance,
        10,
        "nothing charged"
    );
}

async fn generate_lists_models_and_charges_per_image(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let tenant = app.tenant("studio").await;
    app.member(&tenant, "shop", 10).await;
    let models = app
        .jobs
        .clone()
        .list_models(bearer(pb::ListModelsRequest {}, &tenant.key))
        .await
        .expect("models")
        .into_inner()
        .models;
    assert_eq!(models.len(), 1, "{models:?}");
    assert_eq!(
        (models[0].id.as_str(), models[0].provider.as_str()),
        (MODEL, "fake")
    );
    assert!(models[0].kinds.contains(&(pb::JobKind::PoseSet as i32)));

    let unknown = app
        .submit(&tenant, "shop", generate("no-such-model", 1, None))
        .await
        .expect_err("unknown model");
    assert_eq!(code_of(&unknown), 3006);

    let job = app
        .submit(&tenant, "shop", generate(MODEL, 2, Some(7)))
        .await
        .expect("submit");
    assert_eq!(job.cost, 2, "generate is priced per image");
    let job = app.finish(&tenant, "shop", &job.id).await;
    assert_eq!(job.state(), pb::JobState::Succeeded);
    assert_eq!(job.tasks[0].outputs.len(), 2);
    let calls = provider.calls();
    assert!(calls >= 1);

    // The same request with the same seed is served from the cache: no provider call, refunded.
    let again = app
        .submit(&tenant, "shop", generate(MODEL, 2, Some(7)))
        .await
        .expect("submit");
    let again = app.finish(&tenant, "shop", &again.id).await;
    assert_eq!(again.state(), pb::JobState::Succeeded);
    assert!(again.tasks[0].from_cache);
    assert!(again.tasks[0].outputs.iter().all(|o| o.from_cache));
    assert_eq!(again.refunded, 2);
    assert_eq!(provider.calls(), calls, "the provider was not called again");
    assert_eq!(app.account(&tenant, "shop").await.balance, 10 - 2);
    assert_eq!(app.ledger_sum(&tenant, "shop").await, 10 - 2);
}

async fn a_pose_set_keeps_its_good_shots_and_refunds_the_failed_ones(backend: Backend) {
    let provider = ProviderServer::start().await;
    let app = spawn_with_provider(backend, &provider).await;
    let tenant = app.tenant("poses").await;
    app.member(&tenant, "shop", 20).await;
    // The provider fails the first four calls; the other eight shots succeed.
    provider.fail_next(4, 500);
    let request = pb::SubmitJobRequest {
        params: Some(pb::JobParams {
            params: Some(pb::job_params::Params::PoseSet(pb::PoseSetParams {
                scene: pb::Scene::Studio as i32,
                category: "hoodie".into(),
                description: "grey cotton hoodie".into(),
                model: MODEL.into(),
            })),
        }),
        sources: vec![url_source(&app.sources.url("/image.jpg"))],
        ..Default::default()
    };
    let job = app.submit(&tenant, "shop", request).await.expect("submit");
    assert_eq!(job.cost, 12);
    let job = app.finish(&tenant, "shop", &job.id).await;
    let task = &job.tasks[0];
    let failed = 12 - task.outputs.len() as u64;
    assert!(
        failed > 0 && failed < 12,
        "some shots failed, some succeeded: {task:?}"
    );
    assert_eq!(job.state(), pb::JobState::PartiallySucceeded);
    assert_eq!(task.state(), pb::TaskState::Succeeded);
    let failure = task
        .failure
        .as_ref()
        .expect("the failed shots are described");
    assert_eq!(failure.code, 3001);
    assert_eq!(job.refunded, failed, "one unit back per failed shot");
    assert_eq!(
        app.account(&tenant, "shop").await.balance,
        20 - 12 + failed as i64
    );
    assert_eq!(
        app.ledger_sum(&tenant, "shop").await,
        20 - 12 + failed as i64
    );
}

async fn a_repeated_transform_is_served_from_the_cache_and_refunded(backend: Backend) {
    let app = spawn_app(backend).await;
    let tenant = app.tenant("cache").await;
    app.member(&tenant, "shop", 10).await;
    let request = transform_job(&[app.sources.url("/image.jpg")]);
    let first = app
        .submit(&tenant, "shop", request.clone())
        .await
        .expect("submit");
    let first = app.finish(&tenant, "shop", &first.id).await;
    assert!(!first.tasks[0].from_cache);
    let second = app.submit(&tenant, "shop", request).await.expect("submit");
    let second = app.finish(&tenant, "shop", &second.id).await;
    assert_eq!(second.state(), pb::JobState::Succeeded);
    assert!(second.tasks[0].from_cache);
    assert_eq!((second.cost, second.refunded), (1, 1));
    assert_eq!(
        second.tasks[0].outputs[0].sha256, first.tasks[0].outputs[0].sha256,
        "the same result"
    );
    // Another tenant does not share the entry.
    let other = app.tenant("other").await;
    app.member(&other, "shop", 10).await;
    let theirs = app
        .submit(
            &other,
            "shop",
            transform_job(&[app.sources.url("/image.jpg")]),
        )
        .await
        .expect("submit");
    let theirs = app.finish(&other, "shop", &theirs.id).await;
    assert!(!theirs.tasks[0].from_cache);
    assert_eq!(app.account(&tenant, "shop").await.balance, 9);
    assert_eq!(app.ledger_sum(&tenant, "shop").await, 9);
}

on_both_databases!(
    model_kinds_without_a_provider_fail_at_submit,
    generate_lists_models_and_charges_per_image,
    a_pose_set_keeps_its_good_shots_and_refunds_the_failed_ones,
    a_repeated_transform_is_served_from_the_cache_and_refunded,
);
