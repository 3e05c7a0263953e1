//! One attempt of one task: call the processor, record what it reports, keep the lease alive, and
//! settle the attempt as success, retry, failure or hand-back.

use std::sync::Arc;
use std::time::Duration;

use atelier_codes::ErrorCode;
use atelier_proto::v1 as pb;
use atelier_telemetry::trace::{TraceParent, TRACEPARENT};
use prost::Message;
use rand::Rng;
use sea_orm::{DbErr, TransactionTrait};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::record::{End, Settlement};
use super::{lease_ms, Dispatcher};

/// Runs one change in its own transaction.
macro_rules! in_txn {
    ($db:expr, |$txn:ident| $body:expr) => {{
        async {
            let $txn = $db.begin().await?;
            let out = $body.await?;
            $txn.commit().await?;
            Ok::<_, DbErr>(out)
        }
        .await
    }};
}
use crate::db::tasks::{self, Lease, Outcome};
use crate::domain::{model_of, now_ms, units_per_task, Kind};
use crate::jobs::lifecycle;

/// First and largest pause between two tries of recording the end of an attempt.
const SETTLE_PAUSE: Duration = Duration::from_millis(200);
const SETTLE_PAUSE_MAX: Duration = Duration::from_secs(2);

/// How long an attempt's reports (source, log lines, progress) may wait in memory before they are
/// written while it runs; a shorter attempt writes them with its end.
const REPORTS_EVERY: Duration = Duration::from_secs(1);

/// One run of an attempt: the provider usage and the reports it sent that are not written yet.
struct Attempt {
    /// Chosen once per run: recording its usage again changes nothing.
    run: String,
    usage: Vec<pb::ProviderUsage>,
    reports: lifecycle::Reported,
}

/// How an attempt ended before it is settled in the database.
#[derive(Clone)]
enum Ended {
    Succeeded {
        outputs: Vec<pb::Output>,
        from_cache: bool,
        failed_units: u32,
        unit_failure: Option<pb::Failure>,
    },
    Failed {
        code: ErrorCode,
        transient: bool,
        message: String,
    },
    /// The processor was at capacity; the attempt does not count.
    Busy,
    /// Cancelled, taken over or timed out elsewhere: nothing more to record.
    Lost,
    /// This replica is shutting down: hand the task back.
    Stopped,
}

impl Dispatcher {
    pub(super) async fn run_attempt(
        self: Arc<Self>,
        lease: Lease,
        slot: super::Slot,
        cancel: CancellationToken,
        hard_stop: CancellationToken,
    ) {
        let trace = lease
            .job
            .trace_parent
            .as_deref()
            .and_then(TraceParent::parse)
            .unwrap_or_else(TraceParent::new_root)
            .child();
        let span = tracing::info_span!("task", job_id = %lease.job.id, task_id = %lease.task.id, attempt = lease.attempt, trace_id = %trace.trace_id());
        async move {
            let limit = self.attempt_timeout(lease.job.kind);
            let started = std::time::Instant::now();
            // What the attempt's provider calls used, as the processor reports it before the end.
            let mut reported = Attempt {
                run: uuid::Uuid::new_v4().to_string(),
                usage: Vec::new(),
                reports: lifecycle::Reported::default(),
            };
            let ended = tokio::select! {
                ended = tokio::time::timeout(limit, self.call_processor(&lease, trace, &mut reported)) => {
                    ended.unwrap_or_else(|_| Ended::Failed {
                        code: ErrorCode::TimedOut,
                        transient: false,
                        message: format!("the attempt did not finish within {} s", limit.as_secs_f64()),
                    })
                }
                _ = cancel.cancelled() => Ended::Lost,
                _ = hard_stop.cancelled() => Ended::Stopped,
                lost = self.keep_lease(&lease) => lost,
            };
            self.count(&lease, &ended, started.elapsed().as_secs_f64());
            if let Ended::Failed { code: ErrorCode::ModelUnavailable, .. } = &ended {
                // The processor no longer offers the model (a provider that rejected its key takes
                // itself off): the catalogue learns it now, so the next submit answers 3006 at once.
                self.processors.refresh().await;
            }
            let _settling = slot.settle().await;
            // The lease is kept while the end waits to be written (it may share a transaction with
            // other ends, behind their jobs' locks), so no sweeper takes back a task that is done.
            let settle = self.settle_until_recorded(&lease, ended, &reported, &hard_stop);
            tokio::pin!(settle);
            tokio::select! {
                () = &mut settle => {}
                _ = self.keep_lease(&lease) => settle.await,
            }
        }
        .instrument(span)
        .await
    }

    /// Records the end of the attempt. While the database cannot be reached (restarting, down) the
    /// record is tried again until it is made: the work is done, and the task must neither be lost
    /// nor run again. This replica's sweeper leaves the task alone meanwhile, and every change is
    /// guarded by the lease, so a record that did reach the database before its connection broke is
    /// not applied twice. Other errors, and a hard stop, leave the task to the sweepers once its
    /// lease expires.
    async fn settle_until_recorded(
        &self,
        lease: &Lease,
        ended: Ended,
        reported: &Attempt,
        hard_stop: &CancellationToken,
    ) {
        let mut pause = SETTLE_PAUSE;
        let mut waited = false;
        let settlement = Arc::new(self.settlement(lease, ended, reported));
        loop {
            match self.settle(&settlement).await {
                Ok(()) => {
                    if waited {
                        tracing::info!(
                            "the end of the attempt is recorded now that the database answers"
                        );
                    }
                    return;
                }
                Err(e) if crate::db::is_conflict(&e) => {
                    // A deadlock with another transaction (the other one went through): again.
                    tracing::debug!(error = %e, "recording the end of the attempt met another transaction; trying again");
                }
                Err(e) if crate::db::is_unavailable(&e) => {
                    if !waited {
                        tracing::warn!(error = %e, "the database is unavailable; recording the end of the attempt when it is back");
                    }
                    waited = true;
                }
                Err(e) => {
                    // The lease will expire and the sweeper takes the task back.
                    tracing::error!(error = %e, "recording the end of the attempt failed");
                    return;
                }
            }
            tokio::select! {
                () = hard_stop.cancelled() => {
                    tracing::warn!("stopping before the end of the attempt could be recorded; the sweeper will take the task back");
                    return;
                }
                () = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(SETTLE_PAUSE_MAX);
        }
    }

    /// Renews the lease until it is lost; never returns while the attempt is ours.
    async fn keep_lease(&self, lease: &Lease) -> Ended {
        let every = self.settings.timing.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            match tasks::renew(&self.db, lease, lease_ms(&self.settings)).await {
                Ok(Outcome::Applied) => {}
                Ok(Outcome::Lost) => return Ended::Lost,
                Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
            }
        }
    }

    fn count(&self, lease: &Lease, ended: &Ended, seconds: f64) {
        let (result, from_cache) = match ended {
            Ended::Succeeded { from_cache, .. } => ("succeeded", *from_cache),
            Ended::Failed { .. } => ("failed", false),
            Ended::Busy | Ended::Stopped => ("handed_back", false),
            Ended::Lost => ("lost", false),
        };
        self.metrics
            .attempt(lease.job.kind.as_str(), result, seconds, from_cache);
    }

    /// The deadline of one attempt: longer for kinds that call a model provider.
    fn attempt_timeout(&self, kind: Kind) -> Duration {
        crate::context::attempt_timeout(
            kind,
            self.settings.timing.attempt_timeout,
            self.settings.timing.model_attempt_timeout,
        )
    }

    async fn call_processor(
        &self,
        lease: &Lease,
        trace: TraceParent,
        attempt: &mut Attempt,
    ) -> Ended {
        let request = match self.process_request(lease) {
            Ok(r) => r,
            Err(message) => {
                return Ended::Failed {
                    code: ErrorCode::Internal,
                    transient: false,
                    message,
                }
            }
        };
        let kind = request
            .params
            .as_ref()
            .and_then(|p| p.params.as_ref())
            .map_or(pb::JobKind::Unspecified, |p| Kind::of(p).to_proto());
        let model = request.params.as_ref().map_or("", model_of).to_string();
        let mut client = self.processors.pick_for(kind, &model);
        let timeout = self.attempt_timeout(lease.job.kind);
        let mut call = self.processors.request(request, timeout);
        if let Ok(value) = trace.to_string().parse() {
            call.metadata_mut().insert(TRACEPARENT, value);
        }
        let stream = client.process(call).await;
        let mut stream = match stream {
            Ok(s) => s.into_inner(),
            Err(status) => return ended_by(&status),
        };
        let mut outputs = Vec::new();
        let mut processor_id = String::new();
        let mut written = tokio::time::Instant::now();
        loop {
            // Reports wait at most REPORTS_EVERY, whether or not the processor says more meanwhile.
            let due = written + REPORTS_EVERY;
            let next = tokio::select! {
                next = stream.message() => Some(next),
                () = tokio::time::sleep_until(due), if !attempt.reports.is_empty() => None,
            };
            let Some(next) = next else {
                written = tokio::time::Instant::now();
                if let Some(lost) = self.write_reports(lease, &mut attempt.reports).await {
                    return lost;
                }
                continue;
            };
            let message = match next {
                Ok(Some(m)) => m,
                Ok(None) => {
                    return Ended::Failed {
                        code: ErrorCode::Unavailable,
                        transient: true,
                        message: "the processor ended the task without completing it".into(),
                    }
                }
                Err(status) => return ended_by(&status),
            };
            match message.event {
                Some(pb::process_event::Event::Accepted(a)) => {
                    tracing::debug!(processor = %a.processor_id, "accepted");
                    processor_id = a.processor_id;
                }
                Some(pb::process_event::Event::SourceFetched(info)) => {
                    attempt.reports.source_fetched(lease, info, &processor_id);
                }
                Some(pb::process_event::Event::Progress(p)) => {
                    // Coalesced: the latest is stored with the next write of the reports.
                    attempt.reports.progress(&p.stage, p.percent);
                }
                Some(pb::process_event::Event::Log(l)) => {
                    attempt
                        .reports
                        .log(lease, &l.level, &l.message, "processor");
                }
                Some(pb::process_event::Event::Output(o)) => outputs.push(o),
                // Stored with the end of the attempt, whatever the end is.
                Some(pb::process_event::Event::Usage(u)) => attempt.usage.push(u),
                Some(pb::process_event::Event::Completed(c)) => {
                    return Ended::Succeeded {
                        outputs,
                        from_cache: c.from_cache,
                        failed_units: c.failed_units,
                        unit_failure: c.unit_failure,
                    }
                }
                None => {}
            }
            if tokio::time::Instant::now() >= due && !attempt.reports.is_empty() {
                written = tokio::time::Instant::now();
                if let Some(lost) = self.write_reports(lease, &mut attempt.reports).await {
                    return lost;
                }
            }
        }
    }

    /// Writes what a long attempt reported so far; `Some(Ended::Lost)` when the attempt is no longer
    /// this replica's. While the database is away the reports wait in memory (bounded) and the work
    /// goes on; the attempt's end records them.
    async fn write_reports(
        &self,
        lease: &Lease,
        reports: &mut lifecycle::Reported,
    ) -> Option<Ended> {
        if !self.database.is_up() {
            return None;
        }
        match in_txn!(self.db, |txn| lifecycle::flush(&txn, lease, reports)) {
            Ok(Outcome::Applied) => self.bus.notify(&lease.job.id),
            Ok(Outcome::Lost) => return Some(Ended::Lost),
            Err(e) => tracing::warn!(error = %e, "recording processor reports failed"),
        }
        None
    }

    fn process_request(&self, lease: &Lease) -> Result<pb::ProcessRequest, String> {
        let params = pb::JobParams::decode(lease.job.params.as_slice())
            .map_err(|e| format!("stored parameters are unreadable: {e}"))?;
        let source = match &lease.task.source_ref {
            Some(blob) => Some(
                pb::SourceRef::decode(blob.as_slice())
                    .map_err(|e| format!("stored source is unreadable: {e}"))?,
            ),
            None => None,
        };
        Ok(pb::ProcessRequest {
            job_id: lease.job.id.clone(),
            task_id: lease.task.id.clone(),
            tenant_id: lease.job.tenant_id.clone(),
            attempt: u32::try_from(lease.attempt).unwrap_or_default(),
            params: Some(params),
            source,
            // Each attempt writes under its own prefix, so a late write of a lost attempt never
            // mixes with the outputs of the attempt that is recorded.
            output_prefix: format!(
                "t/{}/jobs/{}/{}/{}",
                lease.job.tenant_id, lease.job.id, lease.task.id, lease.attempt
            ),
            account: lease.job.account.clone(),
        })
    }

    /// How the attempt's end is written: decided once, so every try writes the same.
    fn settlement(&self, lease: &Lease, ended: Ended, attempt: &Attempt) -> Settlement {
        let end = match ended {
            Ended::Succeeded {
                outputs,
                from_cache,
                failed_units,
                unit_failure,
            } => {
                tracing::info!(
                    outputs = outputs.len(),
                    from_cache,
                    failed_units,
                    "task succeeded"
                );
                let shortfall =
                    (failed_units > 0).then(|| self.shortfall(lease, failed_units, unit_failure));
                End::Succeeded {
                    outputs,
                    from_cache,
                    shortfall,
                }
            }
            Ended::Failed {
                code,
                transient,
                message,
            } => {
                let retryable = code.always_retryable()
                    || (transient
                        && matches!(code, ErrorCode::DownloadFailed | ErrorCode::ModelCallFailed));
                let retry_at = (retryable && lease.attempt < self.settings.timing.max_attempts)
                    .then(|| now_ms() + self.backoff_ms(lease.attempt));
                tracing::warn!(code = code.number(), %message, retry = retry_at.is_some(), "attempt failed");
                End::Failed {
                    failure: lifecycle::failure(code, &message),
                    retry_at,
                }
            }
            Ended::Busy => {
                tracing::info!("processor at capacity; task handed back");
                End::HandBack {
                    run_after: now_ms() + 200,
                    with_usage: false,
                }
            }
            Ended::Stopped => {
                tracing::info!("shutting down; task handed back");
                End::HandBack {
                    run_after: now_ms(),
                    with_usage: true,
                }
            }
            Ended::Lost => End::Lost,
        };
        Settlement {
            lease: lease.clone(),
            end,
            run: attempt.run.clone(),
            usage: attempt.usage.clone(),
            reports: attempt.reports.clone(),
        }
    }

    /// Writes the attempt's end (with what its provider calls used) through the recorder, which may
    /// share the transaction with other attempts' ends.
    async fn settle(&self, settlement: &Arc<Settlement>) -> Result<(), DbErr> {
        if matches!(settlement.end, End::Lost) && settlement.usage.is_empty() {
            return Ok(());
        }
        let outcome = self.recorder.record(Arc::clone(settlement)).await?;
        if outcome == Outcome::Applied {
            self.bus.notify(&settlement.lease.job.id);
            self.handle.wake();
        }
        Ok(())
    }

    /// What a task owes back for its failed units: the task price shared evenly over its units.
    fn shortfall(
        &self,
        lease: &Lease,
        failed_units: u32,
        unit_failure: Option<pb::Failure>,
    ) -> lifecycle::Shortfall {
        let units = pb::JobParams::decode(lease.job.params.as_slice())
            .map(|p| units_per_task(&p))
            .unwrap_or(1)
            .max(1);
        let failed = i64::from(failed_units).min(units);
        let failure = unit_failure.unwrap_or_else(|| {
            lifecycle::failure(ErrorCode::ModelCallFailed, "some units of the task failed")
        });
        let failure = pb::Failure {
            message: format!(
                "{failed} of {units} failed; the rest succeeded: {}",
                failure.message
            ),
            ..failure
        };
        lifecycle::Shortfall {
            failed_units,
            failure,
            refund: lease.job.unit_price.saturating_mul(failed) / units,
        }
    }

    /// Exponential backoff with ±25 % jitter, so retries of many tasks spread out.
    fn backoff_ms(&self, attempt: i32) -> i64 {
        let base = self.settings.timing.retry_base.as_millis() as f64
            * 2f64.powi(attempt.saturating_sub(1).clamp(0, 16));
        let jitter = rand::rng().random_range(0.75..1.25);
        (base * jitter) as i64
    }
}

/// Reads a processor's status: capacity answers hand the task back, a call whose connection broke is
/// 1009 UNAVAILABLE (retried, like a processor the lease sweeper finds gone), the rest are failures
/// with the codes the processor sent.
fn ended_by(status: &tonic::Status) -> Ended {
    if status.code() == tonic::Code::ResourceExhausted {
        return Ended::Busy;
    }
    if connection_lost(status) {
        return Ended::Failed {
            code: ErrorCode::Unavailable,
            transient: true,
            message: format!(
                "the connection to the processor was lost during the attempt: {}",
                status.message()
            ),
        };
    }
    let decoded = atelier_codes::decode(status);
    let code = match (decoded.code, status.code()) {
        // Our own deadline for the attempt.
        (_, tonic::Code::DeadlineExceeded) => ErrorCode::TimedOut,
        _ if caused_by::<tonic::TimeoutExpired>(status) => ErrorCode::TimedOut,
        (code, _) => code,
    };
    Ended::Failed {
        code,
        transient: decoded.transient,
        message: decoded.message,
    }
}

/// Whether tonic made this status here, from a transport error (a connection reset or closed by a
/// processor that died, a failed connect), rather than receiving it from the processor: a status
/// sent over the wire never has a source, one built from an error always has. Tonic names such
/// breaks UNKNOWN or INTERNAL, which would read as a bug of ours (1006). Our own deadline is the
/// exception: it is 1007, whoever noticed it.
fn connection_lost(status: &tonic::Status) -> bool {
    status.code() != tonic::Code::DeadlineExceeded
        && !caused_by::<tonic::TimeoutExpired>(status)
        && std::error::Error::source(status).is_some()
}

/// Whether an `E` is among the errors the status was made from.
fn caused_by<E: std::error::Error + 'static>(status: &tonic::Status) -> bool {
    std::iter::successors(std::error::Error::source(status), |e| e.source()).any(|e| e.is::<E>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(ended: Ended) -> (ErrorCode, bool) {
        match ended {
            Ended::Failed {
                code, transient, ..
            } => (code, transient),
            _ => panic!("a failure"),
        }
    }

    #[test]
    fn a_broken_connection_is_unavailable_and_retried() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let status = tonic::Status::from_error(Box::new(reset));
        assert_eq!(status.code(), tonic::Code::Unknown, "what tonic calls it");
        assert_eq!(failure(ended_by(&status)), (ErrorCode::Unavailable, true));
    }

    #[test]
    fn statuses_the_processor_sent_keep_their_codes() {
        let sent = atelier_codes::status(ErrorCode::Internal, "a bug in the processor");
        assert_eq!(failure(ended_by(&sent)).0, ErrorCode::Internal);
        let sent = atelier_codes::status(ErrorCode::UnsupportedFormat, "not an image");
        assert_eq!(failure(ended_by(&sent)).0, ErrorCode::UnsupportedFormat);
        let bare = tonic::Status::unknown("no details");
        assert_eq!(failure(ended_by(&bare)).0, ErrorCode::Internal);
        let deadline = tonic::Status::deadline_exceeded("too slow");
        assert_eq!(failure(ended_by(&deadline)).0, ErrorCode::TimedOut);
        let expired = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(failure(ended_by(&expired)).0, ErrorCode::TimedOut);
        assert!(matches!(
            ended_by(&tonic::Status::resource_exhausted("busy")),
            Ended::Busy
        ));
    }
}
