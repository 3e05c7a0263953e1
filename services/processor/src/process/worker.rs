//! One task attempt: fetch the source, validate, run the engine off the async threads, upload, report.
//! The attempt stops as soon as the caller drops the stream, and uploads nothing after that.

use std::sync::Arc;

use atelier_engine::{Format, Limits, Rendered};
use atelier_proto::v1::{self, process_event::Event};
use atelier_storage::Storage;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tonic::Status;

use super::request::{SourceLocation, TaskRequest, Work};
use super::ProcessError;
use crate::download::Downloader;

/// The sending half of a `Process` stream.
pub type EventSender = mpsc::Sender<Result<v1::ProcessEvent, Status>>;

/// What every attempt on this processor shares.
#[derive(Debug)]
pub struct Shared {
    /// Where sources are read from and outputs go.
    pub storage: Storage,
    /// The guarded http client.
    pub downloader: Downloader,
    /// Reported in `Accepted`.
    pub processor_id: String,
    /// Largest source accepted.
    pub max_source_bytes: u64,
    /// Validation limits handed to the engine.
    pub limits: Limits,
}

/// Runs the attempt and ends the stream with its error, if any. Holds `permit` until the engine is done.
pub async fn run(
    shared: Arc<Shared>,
    task: TaskRequest,
    tx: EventSender,
    permit: OwnedSemaphorePermit,
) {
    let permit = Arc::new(permit);
    match execute(&shared, task, &tx, permit).await {
        Ok(()) => tracing::info!("task completed"),
        Err(ProcessError::Cancelled) => tracing::info!("caller dropped the stream; task abandoned"),
        Err(err) => {
            let status = Status::from(err);
            tracing::warn!(code = ?status.code(), message = status.message(), "task failed");
            // The caller may be gone already; there is no one else to tell.
            let _ = tx.send(Err(status)).await;
        }
    }
}

async fn execute(
    shared: &Shared,
    task: TaskRequest,
    tx: &EventSender,
    permit: Arc<OwnedSemaphorePermit>,
) -> Result<(), ProcessError> {
    send(
        tx,
        Event::Accepted(v1::Accepted {
            processor_id: shared.processor_id.clone(),
        }),
    )
    .await?;

    let source = tokio::select! {
        source = read_source(shared, &task.source) => source?,
        () = tx.closed() => return Err(ProcessError::Cancelled),
    };
    let (sha256, info) = inspect(source.clone(), shared.limits.clone()).await?;
    tracing::info!(
        bytes = source.len(),
        width = info.width,
        height = info.height,
        "source fetched"
    );
    send(
        tx,
        Event::SourceFetched(v1::SourceInfo {
            sha256,
            format: proto_format(info.format) as i32,
            width: info.width,
            height: info.height,
            bytes: source.len() as u64,
        }),
    )
    .await?;

    let engine = run_engine(task.work, source, shared.limits.clone(), tx.clone(), permit);
    let rendered = tokio::select! {
        rendered = engine => rendered?,
        () = tx.closed() => return Err(ProcessError::Cancelled),
    };

    for output in rendered {
        let event = upload(shared, &task.output_prefix, output, tx).await?;
        send(tx, Event::Output(event)).await?;
    }
    send(
        tx,
        Event::Completed(v1::Completed {
            from_cache: false,
            ..Default::default()
        }),
    )
    .await
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

async fn send(tx: &EventSender, event: Event) -> Result<(), ProcessError> {
    tx.send(Ok(v1::ProcessEvent { event: Some(event) }))
        .await
        .map_err(|_| ProcessError::Cancelled)
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

/// Runs the engine on a blocking thread, forwarding its progress as events.
async fn run_engine(
    work: Work,
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
            Work::Transform(recipe) => {
                atelier_engine::transform(&source, recipe, &limits, &mut progress)
            }
            Work::BasicClean(template) => {
                atelier_engine::basic_clean(&source, *template, &limits, &mut progress)
            }
        }
    });
    match job.await {
        Ok(result) => Ok(result?),
        Err(join) => Err(ProcessError::Internal(format!(
            "engine worker stopped: {join}"
        ))),
    }
}

/// Stores one output and its thumbnail, unless the caller has gone.
async fn upload(
    shared: &Shared,
    prefix: &str,
    output: Rendered,
    tx: &EventSender,
) -> Result<v1::Output, ProcessError> {
    let key = format!("{prefix}/{}", output.name);
    let stem = output
        .name
        .rsplit_once('.')
        .map_or(output.name.as_str(), |(stem, _)| stem);
    let thumb = output.thumbnail;
    let thumb_key = format!("{prefix}/thumbs/{stem}.{}", thumb.format.extension());
    let sha256 = hex::encode(Sha256::digest(&output.data));
    let bytes = output.data.len() as u64;
    let thumb_bytes = thumb.data.len() as u64;

    put(shared, tx, &key, output.data, output.format).await?;
    put(shared, tx, &thumb_key, thumb.data, thumb.format).await?;

    Ok(v1::Output {
        name: output.name,
        url: shared.storage.url(&key),
        key,
        content_type: output.format.content_type().to_string(),
        width: output.width,
        height: output.height,
        bytes,
        sha256,
        thumbnail: Some(v1::Thumbnail {
            url: shared.storage.url(&thumb_key),
            key: thumb_key,
            content_type: thumb.format.content_type().to_string(),
            width: thumb.width,
            height: thumb.height,
            bytes: thumb_bytes,
        }),
        from_cache: false,
    })
}

async fn put(
    shared: &Shared,
    tx: &EventSender,
    key: &str,
    data: Vec<u8>,
    format: Format,
) -> Result<(), ProcessError> {
    if tx.is_closed() {
        return Err(ProcessError::Cancelled);
    }
    shared
        .storage
        .put(key, Bytes::from(data), format.content_type())
        .await
        .map_err(ProcessError::Upload)
}

fn proto_format(format: Format) -> v1::ImageFormat {
    match format {
        Format::Jpeg => v1::ImageFormat::Jpeg,
        Format::Png => v1::ImageFormat::Png,
        Format::Webp => v1::ImageFormat::Webp,
    }
}
