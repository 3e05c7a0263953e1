//! One task attempt: fetch the source, validate, look in the content cache, then run the engine off the
//! async threads or call a model provider, upload, record the result in the cache, report.
//! The attempt stops as soon as the caller drops the stream, and uploads nothing after that.

use std::sync::Arc;
use std::time::Instant;

use atelier_engine::{
    basic_clean_with, CleanTemplate, EngineError, Format, Limits, Matting, Rendered,
};
use atelier_proto::v1::{self, process_event::Event};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;
use tonic::Status;

use super::attempt::{log, send, EventSender, Finished, Shared, Source, WAITING_STAGE};
use super::output::upload;
use super::request::{SourceLocation, TaskRequest, Work};
use super::{model, ProcessError};
use crate::cache::{cache_key, Slot, Turn};
use crate::matting::MattingRoute;
use crate::metrics::{KindLabels, KindResultLabels};
use crate::providers::{answer_mask, ProviderError};

/// Runs the attempt and ends the stream with its error, if any. Holds `permit` until the engine is done.
pub async fn run(
    shared: Arc<Shared>,
    task: TaskRequest,
    tx: EventSender,
    permit: OwnedSemaphorePermit,
) {
    let kind = task.work.kind();
    let started = Instant::now();
    let metrics = Arc::clone(&shared.metrics);
    metrics.tasks_in_flight.inc();
    let result = execute(&shared, &task, &tx, Arc::new(permit)).await;
    metrics.tasks_in_flight.dec();
    let label = match &result {
        Ok(f) if f.failed_units > 0 => "partially_succeeded",
        Ok(_) => "succeeded",
        Err(ProcessError::Cancelled) => "cancelled",
        Err(_) => "failed",
    };
    metrics
        .tasks
        .get_or_create(&KindResultLabels {
            kind,
            result: label,
        })
        .inc();
    metrics
        .task_duration
        .get_or_create(&KindLabels { kind })
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(f) => tracing::info!(
            from_cache = f.from_cache,
            outputs = f.outputs.len(),
            failed_units = f.failed_units,
            "task completed"
        ),
        Err(ProcessError::Cancelled) => tracing::info!("caller dropped the stream; task abandoned"),
        Err(err) => {
            let status = Status::from(err);
            tracing::warn!(code = ?status.code(), message = status.message(), "task failed");
            // The provider calls of a failed attempt were made (and paid for) all the same. The
            // caller may be gone already; there is no one else to tell.
            if report_usage(&tx, &task).await.is_ok() {
                let _ = tx.send(Err(status)).await;
            }
        }
    }
}

async fn execute(
    shared: &Shared,
    task: &TaskRequest,
    tx: &EventSender,
    permit: Arc<OwnedSemaphorePermit>,
) -> Result<Finished, ProcessError> {
    send(
        tx,
        Event::Accepted(v1::Accepted {
            processor_id: shared.processor_id.clone(),
        }),
    )
    .await?;

    let source = match &task.source {
        Some(location) => Some(fetch(shared, location, &task.work, tx).await?),
        None => None,
    };
    let matting = task.matting.as_ref().map(|m| m.cache_name());
    let model = task
        .route
        .as_ref()
        .map(|r| r.model.as_str())
        .or(matting.as_deref());
    let cached = shared.cache.as_ref().and_then(|cache| {
        let key = cache_key(
            source.as_ref().map(|s| s.sha256.as_str()),
            &task.work,
            model,
        )?;
        Some((cache, Slot::new(&task.tenant_id, key)?))
    });
    let Some((cache, slot)) = cached else {
        let finished = fresh(shared, task, source, tx, permit).await?;
        return completed(tx, task, finished).await;
    };
    let labels = KindLabels {
        kind: task.work.kind(),
    };
    let inflight_key = slot.location();
    loop {
        if let Some(outputs) = cache.lookup(&slot).await {
            shared.metrics.cache_hits.get_or_create(&labels).inc();
            log(
                tx,
                "info",
                "served from the content cache: no engine run, no provider call",
            )
            .await?;
            return serve_cached(tx, task, outputs).await;
        }
        match shared.inflight.join(&inflight_key) {
            Turn::Lead(guard) => {
                // Another task may have stored the result between the lookup and taking the lead.
                if let Some(outputs) = cache.lookup(&slot).await {
                    drop(guard);
                    shared.metrics.cache_hits.get_or_create(&labels).inc();
                    log(
                        tx,
                        "info",
                        "served from the content cache: no engine run, no provider call",
                    )
                    .await?;
                    return serve_cached(tx, task, outputs).await;
                }
                shared.metrics.cache_misses.get_or_create(&labels).inc();
                let finished = fresh(shared, task, source, tx, permit).await?;
                // Partial results are not reused: a later task may get every unit.
                if finished.failed_units == 0 {
                    cache
                        .store(&slot, task.work.kind(), &finished.outputs)
                        .await;
                }
                drop(guard);
                return completed(tx, task, finished).await;
            }
            Turn::Wait(waiter) => {
                tracing::info!("an identical task is running; waiting for its result");
                log(
                    tx,
                    "info",
                    "an identical task is running here; waiting for its result",
                )
                .await?;
                send(
                    tx,
                    Event::Progress(v1::Progress {
                        stage: WAITING_STAGE.to_string(),
                        percent: 0,
                    }),
                )
                .await?;
                tokio::select! {
                    () = waiter.done() => {}
                    () = tx.closed() => return Err(ProcessError::Cancelled),
                }
            }
        }
    }
}

/// One `usage` event per provider and model the attempt called, if it called any.
async fn report_usage(tx: &EventSender, task: &TaskRequest) -> Result<(), ProcessError> {
    for usage in task.usage.take() {
        send(tx, Event::Usage(usage)).await?;
    }
    Ok(())
}

async fn completed(
    tx: &EventSender,
    task: &TaskRequest,
    finished: Finished,
) -> Result<Finished, ProcessError> {
    let mut finished = finished;
    if !finished.from_cache {
        let mut line = format!("produced {} outputs", finished.outputs.len());
        if finished.failed_units > 0 {
            line.push_str(&format!("; {} units failed", finished.failed_units));
        }
        log(tx, "info", &line).await?;
    }
    let unit_failure = finished.first_failure.take().map(ProcessError::failure);
    report_usage(tx, task).await?;
    send(
        tx,
        Event::Completed(v1::Completed {
            from_cache: finished.from_cache,
            failed_units: finished.failed_units,
            unit_failure,
        }),
    )
    .await?;
    Ok(finished)
}

async fn serve_cached(
    tx: &EventSender,
    task: &TaskRequest,
    outputs: Vec<v1::Output>,
) -> Result<Finished, ProcessError> {
    tracing::info!(outputs = outputs.len(), "served from the content cache");
    for output in &outputs {
        send(tx, Event::Output(output.clone())).await?;
    }
    completed(
        tx,
        task,
        Finished {
            outputs,
            from_cache: true,
            ..Finished::default()
        },
    )
    .await
}

/// Runs the work for real: the engine or a provider, then uploads.
async fn fresh(
    shared: &Shared,
    task: &TaskRequest,
    source: Option<Source>,
    tx: &EventSender,
    permit: Arc<OwnedSemaphorePermit>,
) -> Result<Finished, ProcessError> {
    if task.work.model_kind().is_some() {
        return model::run(shared, task, source.as_ref(), tx).await;
    }
    let source =
        source.ok_or_else(|| ProcessError::Internal("a local kind without its source".into()))?;
    let cut_out = remote_cut_out(task, &source, tx).await?;
    shared
        .metrics
        .engine_runs
        .get_or_create(&KindLabels {
            kind: task.work.kind(),
        })
        .inc();
    let engine = run_engine(
        task.work.clone(),
        task.matting.clone(),
        cut_out,
        source.bytes,
        shared.limits.clone(),
        tx.clone(),
        permit,
    );
    let rendered = tokio::select! {
        rendered = engine => rendered?,
        () = tx.closed() => return Err(ProcessError::Cancelled),
    };
    let mut finished = Finished::default();
    for output in rendered {
        let output = upload(shared, &task.output_prefix, output, tx).await?;
        send(tx, Event::Output(output.clone())).await?;
        finished.outputs.push(output);
    }
    Ok(finished)
}

/// The remote matting provider's cut-out of the source, when basic_clean is routed to one and
/// wants a cut-out at all (the `enhanced` template does not).
async fn remote_cut_out(
    task: &TaskRequest,
    source: &Source,
    tx: &EventSender,
) -> Result<Option<Bytes>, ProcessError> {
    let (Work::BasicClean(clean), Some(MattingRoute::Remote(route))) = (&task.work, &task.matting)
    else {
        return Ok(None);
    };
    if clean.template == CleanTemplate::Enhanced {
        return Ok(None);
    }
    let provider = route.provider.name();
    log(
        tx,
        "info",
        &format!(
            "cutting out with `{}` of matting provider `{provider}`",
            route.model
        ),
    )
    .await?;
    send(
        tx,
        Event::Progress(v1::Progress {
            stage: "matting".to_string(),
            percent: 5,
        }),
    )
    .await?;
    let call = route
        .provider
        .cut_out(&route.model, &source.bytes, source.format);
    tokio::select! {
        answer = call => Ok(Some(answer?)),
        () = tx.closed() => Err(ProcessError::Cancelled),
    }
}

/// Downloads (or reads) the source, hashes and probes it, and reports it.
async fn fetch(
    shared: &Shared,
    location: &SourceLocation,
    work: &Work,
    tx: &EventSender,
) -> Result<Source, ProcessError> {
    let bytes = tokio::select! {
        source = read_source(shared, location) => source?,
        () = tx.closed() => return Err(ProcessError::Cancelled),
    };
    let limits = Limits {
        model_aspect: work.model_kind().is_some(),
        ..shared.limits.clone()
    };
    let (sha256, info) = inspect(bytes.clone(), limits).await?;
    tracing::info!(
        bytes = bytes.len(),
        width = info.width,
        height = info.height,
        "source fetched"
    );
    send(
        tx,
        Event::SourceFetched(v1::SourceInfo {
            sha256: sha256.clone(),
            format: proto_format(info.format) as i32,
            width: info.width,
            height: info.height,
            bytes: bytes.len() as u64,
        }),
    )
    .await?;
    Ok(Source {
        bytes,
        sha256,
        format: info.format,
    })
}

/// Hashes and probes the source off the async threads (10 MiB of SHA-256 is not free).
async fn inspect(
    source: Bytes,
    limits: Limits,
) -> Result<(String, atelier_engine::SourceInfo), ProcessError> {
    let job = tokio::task::spawn_blocking(move || {
        let sha256 = hex::encode(Sha256::digest(&source));
        atelier_engine::probe(&source, &limits).map(|info| (sha256, info))
    });
    match job.await {
        Ok(result) => Ok(result?),
        Err(join) => Err(ProcessError::Internal(format!(
            "source check stopped: {join}"
        ))),
    }
}

async fn read_source(shared: &Shared, source: &SourceLocation) -> Result<Bytes, ProcessError> {
    match source {
        SourceLocation::Url(url) => Ok(shared.downloader.fetch(url).await?),
        SourceLocation::Object(key) => shared
            .storage
            .get(key, shared.max_source_bytes)
            .await
            .map_err(ProcessError::SourceObject),
    }
}

/// Runs the engine on a blocking thread, forwarding its progress as events. `cut_out` is the
/// remote matting provider's answer, when the task was routed to one.
async fn run_engine(
    work: Work,
    matting: Option<MattingRoute>,
    cut_out: Option<Bytes>,
    source: Bytes,
    limits: Limits,
    tx: EventSender,
    permit: Arc<OwnedSemaphorePermit>,
) -> Result<Vec<Rendered>, ProcessError> {
    let span = tracing::Span::current();
    let job = tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        // The permit stays taken until the engine really stops, even when the caller left early.
        let _permit = permit;
        let mut last: Option<(String, u32)> = None;
        let mut progress = |stage: &str, percent: u32| {
            let percent = percent.min(100);
            if last
                .as_ref()
                .is_some_and(|(s, p)| s == stage && *p == percent)
            {
                return;
            }
            last = Some((stage.to_string(), percent));
            let event = Event::Progress(v1::Progress {
                stage: stage.to_string(),
                percent,
            });
            // A closed stream is noticed by the async side; progress is best effort.
            let _ = tx.blocking_send(Ok(v1::ProcessEvent { event: Some(event) }));
        };
        match &work {
            Work::Transform(recipe) => Ok(atelier_engine::transform(
                &source,
                recipe,
                &limits,
                &mut progress,
            )?),
            Work::BasicClean(clean) => {
                let min_confidence = clean.min_confidence;
                match &matting {
                    Some(MattingRoute::Local(model)) => {
                        let mut segment = |rgb: &image::RgbImage| model.segment(rgb);
                        let matting = Matting::Segmented {
                            method: "model",
                            model: model.name(),
                            min_confidence,
                            segment: &mut segment,
                        };
                        Ok(basic_clean_with(
                            &source,
                            clean.template,
                            matting,
                            &limits,
                            &mut progress,
                        )?)
                    }
                    Some(MattingRoute::Remote(route)) => {
                        // The provider's answer is checked against the decoded photo here; what is
                        // wrong with it is the provider's failure (3001), not the engine's.
                        let provider = route.provider.name();
                        let png = cut_out.as_deref().unwrap_or_default();
                        let mut refused: Option<ProviderError> = None;
                        let mut segment = |rgb: &image::RgbImage| {
                            answer_mask(provider, png, rgb.width(), rgb.height()).map_err(|e| {
                                let message = e.to_string();
                                refused = Some(e);
                                EngineError::Matting(message)
                            })
                        };
                        let matting = Matting::Segmented {
                            method: "remote",
                            model: &route.model,
                            min_confidence,
                            segment: &mut segment,
                        };
                        let result = basic_clean_with(
                            &source,
                            clean.template,
                            matting,
                            &limits,
                            &mut progress,
                        );
                        match refused {
                            Some(e) => Err(e.into()),
                            None => Ok(result?),
                        }
                    }
                    Some(MattingRoute::Classical) | None => {
                        let matting = Matting::Classical { min_confidence };
                        Ok(basic_clean_with(
                            &source,
                            clean.template,
                            matting,
                            &limits,
                            &mut progress,
                        )?)
                    }
                }
            }
            Work::Edit(_) | Work::Generate(_) | Work::PoseSet(_) => Ok(Vec::new()),
        }
    });
    match job.await {
        Ok(result) => result,
        Err(join) => Err(ProcessError::Internal(format!(
            "engine worker stopped: {join}"
        ))),
    }
}

fn proto_format(format: Format) -> v1::ImageFormat {
    match format {
        Format::Jpeg => v1::ImageFormat::Jpeg,
        Format::Png => v1::ImageFormat::Png,
        Format::Webp => v1::ImageFormat::Webp,
    }
}
