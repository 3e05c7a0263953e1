//! The model kinds: edit and generate (one provider call for 1..=4 images) and pose_set (12 calls,
//! limited by the provider's concurrency, kept shot by shot when some fail; or one workflow run
//! yielding all 12 when the provider's workflow is configured so).
//!
//! Each call goes to the route's providers in order until one answers (fallback on failures another
//! provider may not have); the provider's request id and every fallback are written to the task's
//! log, and each call is counted per tenant, account, provider and model.

use std::sync::Arc;

use atelier_engine::{Format, Limits};
use atelier_proto::v1::{self, process_event::Event};
use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};

use super::attempt::{log, send, EventSender, Finished, Shared, Source};
use super::output::{provider_image, upload};
use super::params::PoseSetWork;
use super::{ProcessError, TaskRequest, Work};
use crate::metrics::UsageLabels;
use crate::providers::pose::{self, Shot};
use crate::providers::{ImageCall, ModelRoute, Provider, ProviderError, Reply};

/// Calls the route's providers in order until one answers.
async fn call_model(
    shared: &Shared,
    task: &TaskRequest,
    route: &ModelRoute,
    call: &ImageCall<'_>,
    tx: &EventSender,
) -> Result<(Reply, Arc<Provider>), ProcessError> {
    let candidates: Vec<Arc<Provider>> = route.candidates().cloned().collect();
    if candidates.is_empty() {
        return Err(ProcessError::ModelUnavailable(format!(
            "no provider of model `{}` is available (every one rejected its API key)",
            route.model
        )));
    }
    for (i, provider) in candidates.iter().enumerate() {
        let labels = UsageLabels {
            tenant: task.tenant_id.clone(),
            account: task.account.clone(),
            provider: provider.name().to_string(),
            model: route.model.clone(),
        };
        let metrics = &shared.metrics;
        let (result, took) = provider.images(call).await;
        let images = result.as_ref().ok().map(|reply| reply.images.len());
        task.usage.call(provider.name(), &route.model, took, images);
        metrics.usage_calls.get_or_create(&labels).inc();
        metrics
            .usage_seconds
            .get_or_create(&labels)
            .inc_by(took.as_secs_f64());
        match result {
            Ok(reply) => {
                metrics
                    .usage_images
                    .get_or_create(&labels)
                    .inc_by(reply.images.len() as u64);
                let id = reply
                    .request_id
                    .as_deref()
                    .map(|id| format!(", request id {id}"))
                    .unwrap_or_default();
                let line = format!(
                    "provider {} answered model {} with {} images{id}",
                    provider.name(),
                    route.model,
                    reply.images.len()
                );
                log(tx, "info", &line).await?;
                return Ok((reply, Arc::clone(provider)));
            }
            Err(err) => {
                metrics.usage_failures.get_or_create(&labels).inc();
                match candidates.get(i + 1) {
                    Some(next) if err.falls_back() => {
                        let line = format!("{err}; trying provider {}", next.name());
                        log(tx, "warn", &line).await?;
                    }
                    _ => {
                        log(tx, "warn", &err.to_string()).await?;
                        return Err(err.into());
                    }
                }
            }
        }
    }
    Err(ProcessError::Internal("no provider was called".into()))
}

/// Runs a model kind to its uploaded outputs (Completed is sent by the caller).
pub async fn run(
    shared: &Shared,
    task: &TaskRequest,
    source: Option<&Source>,
    tx: &EventSender,
) -> Result<Finished, ProcessError> {
    let route = task
        .route
        .as_ref()
        .ok_or_else(|| ProcessError::Internal("a model kind without a provider route".into()))?;
    let image = || {
        source
            .map(|s| (&s.bytes[..], s.format))
            .ok_or_else(|| ProcessError::Internal("a model kind without its source".into()))
    };
    match &task.work {
        Work::Edit(e) => {
            let call = ImageCall {
                model: &route.model,
                prompt: &e.prompt,
                negative_prompt: &e.negative_prompt,
                n: e.num_images,
                size: e.size,
                seed: e.seed,
                steps: 0,
                guidance_scale: 0.0,
                image: Some(image()?),
            };
            batch(shared, task, route, &call, "edit", tx).await
        }
        Work::Generate(g) => {
            let call = ImageCall {
                model: &route.model,
                prompt: &g.prompt,
                negative_prompt: &g.negative_prompt,
                n: g.num_images,
                size: g.size,
                seed: g.seed,
                steps: g.steps,
                guidance_scale: g.guidance_scale,
                image: None,
            };
            batch(shared, task, route, &call, "image", tx).await
        }
        Work::PoseSet(p) => pose_set(shared, task, route, p, image()?, tx).await,
        Work::Transform(_) | Work::BasicClean(_) => Err(ProcessError::Internal(
            "a local kind sent to a model provider".into(),
        )),
    }
}

async fn progress(tx: &EventSender, stage: &str, percent: u32) -> Result<(), ProcessError> {
    send(
        tx,
        Event::Progress(v1::Progress {
            stage: stage.to_string(),
            percent,
        }),
    )
    .await
}

/// One call for `call.n` images named `{stem}-1.png`…; images that come back unusable (or missing)
/// are failed units when at least one is good.
async fn batch(
    shared: &Shared,
    task: &TaskRequest,
    route: &ModelRoute,
    call: &ImageCall<'_>,
    stem: &str,
    tx: &EventSender,
) -> Result<Finished, ProcessError> {
    progress(tx, "model", 0).await?;
    let (reply, provider) = tokio::select! {
        reply = call_model(shared, task, route, call, tx) => reply?,
        () = tx.closed() => return Err(ProcessError::Cancelled),
    };
    let images = reply.images;
    progress(tx, "store", 80).await?;
    let wanted = usize::try_from(call.n).unwrap_or(1).max(1);
    let returned = images.len();
    let mut finished = Finished::default();
    for (i, image) in images.into_iter().take(wanted).enumerate() {
        let name = format!("{stem}-{}", i + 1);
        match store(shared, task, provider.name(), image, name, tx).await {
            Ok(output) => {
                send(tx, Event::Output(output.clone())).await?;
                finished.outputs.push(output);
            }
            Err(ProcessError::Cancelled) => return Err(ProcessError::Cancelled),
            Err(err) => finished.unit_failed(err),
        }
    }
    if returned < wanted {
        for _ in returned..wanted {
            finished.unit_failed(ProcessError::Provider(ProviderError::BadImage {
                provider: provider.name().to_string(),
                message: format!("asked for {wanted} images, received {returned}"),
            }));
        }
    }
    finished.into_result()
}

async fn store(
    shared: &Shared,
    task: &TaskRequest,
    provider: &str,
    image: Bytes,
    stem: String,
    tx: &EventSender,
) -> Result<v1::Output, ProcessError> {
    let limits = Limits {
        model_aspect: false,
        ..shared.limits.clone()
    };
    let rendered = provider_image(provider, image, stem, limits).await?;
    upload(shared, &task.output_prefix, rendered, tx).await
}

/// Twelve shots at once, as many in flight as the provider allows; a Progress event per finished shot.
async fn pose_set(
    shared: &Shared,
    task: &TaskRequest,
    route: &ModelRoute,
    params: &PoseSetWork,
    image: (&[u8], Format),
    tx: &EventSender,
) -> Result<Finished, ProcessError> {
    progress(tx, "shot", 0).await?;
    let per_run = route.provider.images_per_call(&route.model).unwrap_or(1);
    if usize::try_from(per_run).unwrap_or(1) >= pose::SHOTS {
        return pose_set_in_one_run(shared, task, route, params, image, tx).await;
    }
    let shots = pose::shots();
    let total = u32::try_from(shots.len()).unwrap_or(12);
    let mut pending: FuturesUnordered<_> = shots
        .into_iter()
        .map(|shot| one_shot(shared, task, route, params, image, shot, tx))
        .collect();
    let mut finished = Finished::default();
    let mut done = 0;
    loop {
        let next = tokio::select! {
            next = pending.next() => next,
            () = tx.closed() => return Err(ProcessError::Cancelled),
        };
        let Some((shot, result)) = next else { break };
        done += 1;
        match result {
            Ok(output) => {
                send(tx, Event::Output(output.clone())).await?;
                finished.outputs.push(output);
            }
            Err(ProcessError::Cancelled) => return Err(ProcessError::Cancelled),
            Err(err) => {
                tracing::warn!(shot = shot.number, error = %err, "shot failed");
                finished.unit_failed(err);
            }
        }
        progress(tx, "shot", done * 100 / total).await?;
    }
    finished.into_result()
}

async fn one_shot(
    shared: &Shared,
    task: &TaskRequest,
    route: &ModelRoute,
    params: &PoseSetWork,
    image: (&[u8], Format),
    shot: Shot,
    tx: &EventSender,
) -> (Shot, Result<v1::Output, ProcessError>) {
    let prompt = pose::prompt(&shot, params.scene, &params.category, &params.description);
    let call = ImageCall {
        model: &route.model,
        prompt: &prompt,
        negative_prompt: "",
        n: 1,
        size: None,
        seed: None,
        steps: 0,
        guidance_scale: 0.0,
        image: Some(image),
    };
    let result = async {
        let (reply, provider) = call_model(shared, task, route, &call, tx).await?;
        let first = reply.images.into_iter().next().ok_or_else(|| {
            ProcessError::Provider(ProviderError::BadResponse {
                provider: provider.name().to_string(),
                message: "no image in the answer".into(),
            })
        })?;
        store(shared, task, provider.name(), first, shot.stem(), tx).await
    }
    .await;
    (shot, result)
}

/// A workflow that makes the whole set in one run: its images become the shots in order; missing
/// or unusable ones are failed units.
async fn pose_set_in_one_run(
    shared: &Shared,
    task: &TaskRequest,
    route: &ModelRoute,
    params: &PoseSetWork,
    image: (&[u8], Format),
    tx: &EventSender,
) -> Result<Finished, ProcessError> {
    let shots = pose::shots();
    let prompt = pose::prompt(
        &shots[0],
        params.scene,
        &params.category,
        &params.description,
    );
    let call = ImageCall {
        model: &route.model,
        prompt: &prompt,
        negative_prompt: "",
        n: u32::try_from(shots.len()).unwrap_or(12),
        size: None,
        seed: None,
        steps: 0,
        guidance_scale: 0.0,
        image: Some(image),
    };
    let (reply, provider) = tokio::select! {
        reply = call_model(shared, task, route, &call, tx) => reply?,
        () = tx.closed() => return Err(ProcessError::Cancelled),
    };
    progress(tx, "shot", 80).await?;
    let returned = reply.images.len();
    let mut finished = Finished::default();
    let mut images = reply.images.into_iter();
    for shot in shots {
        let result = match images.next() {
            Some(bytes) => store(shared, task, provider.name(), bytes, shot.stem(), tx).await,
            None => Err(ProcessError::Provider(ProviderError::BadImage {
                provider: provider.name().to_string(),
                message: format!("the workflow yielded {returned} images for 12 shots"),
            })),
        };
        match result {
            Ok(output) => {
                send(tx, Event::Output(output.clone())).await?;
                finished.outputs.push(output);
            }
            Err(ProcessError::Cancelled) => return Err(ProcessError::Cancelled),
            Err(err) => finished.unit_failed(err),
        }
    }
    progress(tx, "shot", 100).await?;
    finished.into_result()
}
