//! `atelier.v1.ProcessorService`: runs task attempts for the orchestrator, a bounded number at a time.

mod attempt;
mod error;
mod import;
mod model;
mod output;
pub mod params;
mod request;
mod usage;
mod worker;

use std::sync::Arc;

use atelier_codes::{transient_status, ErrorCode};
use atelier_proto::v1::{self, processor_service_server::ProcessorService};
use atelier_telemetry::trace::{TraceParent, TRACEPARENT};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};
use tracing::Instrument;

pub use attempt::{Shared, WAITING_STAGE};
pub use error::ProcessError;
pub use request::{
    CleanWork, MattingMethod, SourceLocation, TaskRequest, Work, DEFAULT_MIN_CONFIDENCE,
};
pub use usage::Usage;

/// Events buffered per stream before the worker waits for the caller.
const EVENT_BUFFER: usize = 32;

/// The gRPC service: validation, admission, and one worker task per accepted attempt.
#[derive(Debug, Clone)]
pub struct ProcessorApi {
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    max_concurrency: u32,
}

impl ProcessorApi {
    /// A service running at most `max_concurrency` attempts at once.
    pub fn new(shared: Shared, max_concurrency: u32) -> Self {
        let permits = Arc::new(Semaphore::new(
            usize::try_from(max_concurrency).unwrap_or(1).max(1),
        ));
        Self {
            shared: Arc::new(shared),
            permits,
            max_concurrency,
        }
    }
}

#[tonic::async_trait]
impl ProcessorService for ProcessorApi {
    type ProcessStream = ReceiverStream<Result<v1::ProcessEvent, Status>>;

    async fn process(
        &self,
        request: Request<v1::ProcessRequest>,
    ) -> Result<Response<Self::ProcessStream>, Status> {
        // The caller's trace continues here; without a usable one this attempt starts its own.
        let trace = request
            .metadata()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceParent::parse)
            .unwrap_or_else(TraceParent::new_root);
        let req = request.into_inner();
        let span = tracing::info_span!(
            "process",
            trace_id = %trace.trace_id(),
            job_id = %req.job_id,
            task_id = %req.task_id,
            attempt = req.attempt,
            tenant_id = %req.tenant_id,
        );
        let task = span.in_scope(|| {
            let mut task = TaskRequest::try_from(req)?;
            if let Some(kind) = task.work.model_kind() {
                let route = self
                    .shared
                    .providers
                    .route(kind, task.work.requested_model())
                    .map_err(ProcessError::ModelUnavailable)?;
                task.route = Some(route);
            }
            if let Work::BasicClean(clean) = &task.work {
                task.matting = Some(self.shared.matting.route(clean, &self.shared.providers)?);
            }
            Ok::<_, ProcessError>(task)
        });
        let task = task.map_err(|err| {
            span.in_scope(|| tracing::info!(error = %err, "request refused"));
            Status::from(err)
        })?;
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            span.in_scope(|| tracing::info!("at capacity; request handed back"));
            return Err(at_capacity(self.max_concurrency));
        };
        let (tx, rx) = mpsc::channel(EVENT_BUFFER);
        tokio::spawn(worker::run(Arc::clone(&self.shared), task, tx, permit).instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn import_outputs(
        &self,
        request: Request<v1::ImportOutputsRequest>,
    ) -> Result<Response<v1::ImportOutputsResponse>, Status> {
        let req = request.into_inner();
        let span = tracing::info_span!(
            "import",
            job_id = %req.job_id,
            task_id = %req.task_id,
            tenant_id = %req.tenant_id,
            urls = req.urls.len(),
        );
        import::import(&self.shared, req)
            .instrument(span)
            .await
            .map(Response::new)
    }

    async fn get_capabilities(
        &self,
        _request: Request<v1::GetCapabilitiesRequest>,
    ) -> Result<Response<v1::Capabilities>, Status> {
        Ok(Response::new(v1::Capabilities {
            processor_id: self.shared.processor_id.clone(),
            kinds: [v1::JobKind::Transform, v1::JobKind::BasicClean]
                .into_iter()
                .chain(
                    self.shared
                        .providers
                        .kinds()
                        .into_iter()
                        .map(|k| k.job_kind()),
                )
                .map(|k| k as i32)
                .collect(),
            providers: self
                .shared
                .providers
                .info()
                .into_iter()
                .chain(self.shared.matting.info())
                .collect(),
            max_concurrency: self.max_concurrency,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }
}

/// RESOURCE_EXHAUSTED (so the orchestrator re-queues without spending an attempt) with ErrorInfo 1009.
fn at_capacity(max_concurrency: u32) -> Status {
    let message =
        format!("processor is running {max_concurrency} tasks, its maximum; try another or later");
    let unavailable = transient_status(ErrorCode::Unavailable, message.clone());
    Status::with_details(
        Code::ResourceExhausted,
        message,
        unavailable.details().to_vec().into(),
    )
}
