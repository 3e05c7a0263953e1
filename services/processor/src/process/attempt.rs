//! What every part of an attempt shares: the processor's resources ([`Shared`]), the fetched source,
//! the stream back to the orchestrator and how an attempt ended. The worker, the model path, the
//! output uploads and imports all build on this module, never on each other's internals.

use std::sync::Arc;

use atelier_engine::{Format, Limits};
use atelier_proto::v1::{self, process_event::Event};
use atelier_storage::Storage;
use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::Status;

use super::ProcessError;
use crate::cache::{ContentCache, Inflight};
use crate::download::Downloader;
use crate::metrics::Metrics;
use crate::providers::Providers;

/// The sending half of a `Process` stream.
pub type EventSender = mpsc::Sender<Result<v1::ProcessEvent, Status>>;

/// Shown to a task waiting for an identical one to finish.
pub const WAITING_STAGE: &str = "waiting for an identical task";

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
    /// How long an output write is tried again while the store fails.
    pub storage_retry: std::time::Duration,
    /// Validation limits handed to the engine.
    pub limits: Limits,
    /// Configured model providers.
    pub providers: Providers,
    /// Loaded matting models.
    pub matting: Arc<crate::matting::MattingModels>,
    /// The content cache in the object storage; `None` when turned off.
    pub cache: Option<ContentCache>,
    /// Identical tasks running now.
    pub inflight: Arc<Inflight>,
    /// Counters and gauges.
    pub metrics: Arc<Metrics>,
}

/// A fetched and checked source.
#[derive(Debug)]
pub struct Source {
    /// The bytes as downloaded.
    pub bytes: Bytes,
    /// Lower-case hex SHA-256 of the bytes.
    pub sha256: String,
    /// Found by magic bytes.
    pub format: Format,
}

/// How an attempt ended well.
#[derive(Debug, Default)]
pub struct Finished {
    /// Outputs reported, in order.
    pub outputs: Vec<v1::Output>,
    /// Every output came from the cache.
    pub from_cache: bool,
    /// Units (shots, images) that failed while others succeeded.
    pub failed_units: u32,
    /// The first unit failure.
    pub first_failure: Option<ProcessError>,
}

impl Finished {
    /// Counts a failed unit, keeping the first failure.
    pub fn unit_failed(&mut self, err: ProcessError) {
        self.failed_units += 1;
        if self.first_failure.is_none() {
            self.first_failure = Some(err);
        }
    }

    /// The task fails with the first failure when no unit succeeded.
    pub fn into_result(mut self) -> Result<Self, ProcessError> {
        if self.outputs.is_empty() {
            return Err(self
                .first_failure
                .take()
                .unwrap_or_else(|| ProcessError::Internal("the task produced no outputs".into())));
        }
        Ok(self)
    }
}

/// A log line for the job's log (ListJobLogs), from the processor.
pub async fn log(tx: &EventSender, level: &str, message: &str) -> Result<(), ProcessError> {
    send(
        tx,
        Event::Log(v1::Log {
            level: level.to_string(),
            message: message.to_string(),
        }),
    )
    .await
}

/// Sends one event; a closed stream means the caller left.
pub async fn send(tx: &EventSender, event: Event) -> Result<(), ProcessError> {
    tx.send(Ok(v1::ProcessEvent { event: Some(event) }))
        .await
        .map_err(|_| ProcessError::Cancelled)
}
