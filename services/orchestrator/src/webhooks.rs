//! Webhook delivery: the fan-out turns stored job events into outbox rows for every endpoint that wants
//! them (and a job's own `callback_url`), and the sender posts them, signed, with retries.
//!
//! Each request carries `Atelier-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">` keyed
//! with the endpoint's secret, and `Atelier-Event-Id` (also `id` in the body) for de-duplication.
//! Failed attempts (network errors, non-2xx answers, redirects, which are never followed) are retried
//! with exponential backoff until the retry window has passed and at least [`MIN_ATTEMPTS`] were made.
//! Addresses are checked like source downloads: private ranges are refused unless allowed.
//!
//! A job's own `callback_url` gets its family's body where the family has one (seed 000's result
//! shape), and a batch's `callback_url` one delivery when its last job ends: see [`crate::callbacks`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use atelier_netguard::{AddressPolicy, IpNet};
use atelier_proto::v1 as pb;
use hmac::{Hmac, Mac};
use sea_orm::{DatabaseConnection, DbErr, TransactionTrait};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::api::convert;
use crate::callbacks;
use crate::db::{self, entities::job, events::Cursor, webhooks as store};
use crate::domain::{now_ms, JobState, TaskState};
use crate::events::EventBus;
use crate::metrics::Metrics;
use atelier_codes::family::Family;
use atelier_storage::Links;
use atelier_types::Word;

/// A delivery is given up only after this many attempts, whatever the window.
pub const MIN_ATTEMPTS: i32 = 8;
/// Events fanned out per transaction.
const FAN_OUT_BATCH: u64 = 256;
/// Deliveries leased per round.
const CLAIM_BATCH: u64 = 16;
/// How long the fan-out lets a burst of wake-ups gather before it reads (at most the poll interval).
const GATHER: Duration = Duration::from_millis(50);
/// The longest pause between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// Webhook settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub owner: String,
    pub retry_base: Duration,
    pub retry_window: Duration,
    pub timeout: Duration,
    pub allow_private: Vec<IpNet>,
    /// How often the outbox is looked at without a wake-up.
    pub poll: Duration,
}

/// The fan-out and the sender of one replica.
pub struct Webhooks {
    db: DatabaseConnection,
    bus: EventBus,
    settings: Settings,
    policy: Arc<AddressPolicy>,
    client: reqwest::Client,
    metrics: Metrics,
    links: Links,
    /// How far this replica's fan-out got, and when it last wrote the cursor row.
    fanned: std::sync::Mutex<(Option<Cursor>, std::time::Instant)>,
}

/// How often the fan-out cursor row is written while events keep coming. In between, the replica
/// remembers how far it got; fanning an event out again (after a restart, or on another replica)
/// enqueues nothing twice, as deliveries are unique per endpoint and event.
const CURSOR_SAVE_EVERY: Duration = Duration::from_secs(1);

impl Webhooks {
    /// A sender with its guarded HTTP client.
    pub fn new(
        db: DatabaseConnection,
        bus: EventBus,
        settings: Settings,
        metrics: Metrics,
        links: Links,
    ) -> anyhow::Result<Self> {
        let policy = Arc::new(AddressPolicy::new(settings.allow_private.clone()));
        let client = atelier_netguard::client_builder(Arc::clone(&policy))
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .timeout(settings.timeout)
            .user_agent(concat!("atelier-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            db,
            bus,
            settings,
            policy,
            client,
            metrics,
            links,
            fanned: std::sync::Mutex::new((None, std::time::Instant::now())),
        })
    }

    /// Fans out and delivers until `shutdown`; attempts in flight are finished and recorded first.
    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let mut wake = this.bus.subscribe();
        let mut sending = JoinSet::new();
        loop {
            if let Err(e) = this.fan_out().await {
                tracing::warn!(error = %e, "webhook fan-out failed; will try again");
            }
            while sending.try_join_next().is_some() {}
            if sending.is_empty() {
                match store::claim(&this.db, &this.settings.owner, this.lease_ms(), CLAIM_BATCH)
                    .await
                {
                    Ok(due) => {
                        for delivery in due {
                            let this = Arc::clone(&this);
                            sending.spawn(async move { this.deliver(delivery).await });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming webhook deliveries failed"),
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = wake.wait() => {
                    // A burst of events (a batch finishing, many jobs moving at once) costs one
                    // fan-out transaction: let it gather first.
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(this.settings.poll.min(GATHER)) => {}
                    }
                }
                Some(_) = sending.join_next(), if !sending.is_empty() => {}
                () = tokio::time::sleep(this.settings.poll) => {}
            }
        }
        // A delivery that got its 2xx must be recorded, or it would be sent again after the lease.
        while sending.join_next().await.is_some() {}
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from((self.settings.timeout + Duration::from_secs(10)).as_millis())
            .unwrap_or(i64::MAX)
    }

    /// Turns settled events into deliveries, under the fan-out cursor's lock, in one transaction.
    async fn fan_out(&self) -> Result<(), DbErr> {
        loop {
            let txn = self.db.begin().await?;
            let Some(stored) = store::lock_cursor(&txn).await? else {
                // Another replica is fanning out.
                return txn.commit().await;
            };
            let (remembered, saved_at) = self
                .fanned
                .lock()
                .map(|f| *f)
                .unwrap_or((None, std::time::Instant::now()));
            let cursor = remembered.filter(|c| *c > stored).unwrap_or(stored);
            let rows = db::events::rows_since(&txn, None, cursor, FAN_OUT_BATCH).await?;
            let Some(last) = rows.last().map(Cursor::of) else {
                return txn.commit().await;
            };
            let full = rows.len() as u64 == FAN_OUT_BATCH;
            let mut endpoints: HashMap<String, Vec<store::Endpoint>> = HashMap::new();
            let mut decoded = Vec::with_capacity(rows.len());
            for row in rows {
                if !endpoints.contains_key(&row.tenant_id) {
                    let found = store::endpoints(&txn, &row.tenant_id, None).await?;
                    endpoints.insert(row.tenant_id.clone(), found);
                }
                let (tenant_id, account_id) = (row.tenant_id.clone(), row.account_id.clone());
                decoded.push((tenant_id, account_id, db::events::decode(row)?));
            }
            let jobs = Self::jobs_of(&txn, &decoded, &endpoints).await?;
            for (tenant_id, account_id, events) in decoded {
                for event in events {
                    self.fan_out_one(&txn, &tenant_id, &account_id, event, &endpoints, &jobs)
                        .await?;
                }
            }
            let due = full || saved_at.elapsed() >= CURSOR_SAVE_EVERY;
            if last != stored && due {
                store::save_cursor(&txn, last).await?;
            }
            txn.commit().await?;
            if let Ok(mut fanned) = self.fanned.lock() {
                *fanned = (
                    Some(last),
                    if due {
                        std::time::Instant::now()
                    } else {
                        saved_at
                    },
                );
            }
            if !full {
                return Ok(());
            }
        }
    }

    /// The jobs the fan-out of these events reads, in one query: those of terminal events (their
    /// callback and snapshot) and those of tenants with endpoints.
    async fn jobs_of<C: sea_orm::ConnectionTrait>(
        db: &C,
        decoded: &[(String, String, Vec<pb::JobEvent>)],
        endpoints: &HashMap<String, Vec<store::Endpoint>>,
    ) -> Result<HashMap<String, job::Model>, DbErr> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        let mut ids: Vec<String> = decoded
            .iter()
            .flat_map(|(tenant_id, _, events)| {
                let any_endpoint = endpoints.get(tenant_id).is_some_and(|e| !e.is_empty());
                events
                    .iter()
                    .filter(move |e| any_endpoint || terminal_state(e).is_some())
                    .map(|e| e.job_id.clone())
            })
            .collect();
        ids.sort();
        ids.dedup();
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        Ok(job::Entity::find()
            .filter(job::Column::Id.is_in(ids))
            .all(db)
            .await?
            .into_iter()
            .map(|j| (j.id.clone(), j))
            .collect())
    }

    /// Turns one event into the deliveries its tenant's endpoints (and its job's callback) ask for.
    async fn fan_out_one<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        tenant_id: &str,
        account_id: &str,
        event: pb::JobEvent,
        endpoints: &HashMap<String, Vec<store::Endpoint>>,
        jobs: &HashMap<String, job::Model>,
    ) -> Result<(), DbErr> {
        let terminal = terminal_state(&event).is_some();
        let wanted: Vec<&store::Endpoint> = endpoints
            .get(tenant_id)
            .into_iter()
            .flatten()
            .filter(|e| e.account_id.as_ref().is_none_or(|a| *a == account_id))
            .filter(|e| e.wants(terminal))
            .collect();
        // Only terminal events go to a job's callback_url: a progress event nobody asked for costs
        // no read of the job.
        if wanted.is_empty() && !terminal {
            return Ok(());
        }
        let Some(job) = jobs.get(&event.job_id).filter(|j| j.tenant_id == tenant_id) else {
            return Ok(());
        };
        if terminal {
            if let Some(batch_id) = &job.batch_id {
                self.fan_out_batch(db, job, batch_id).await?;
            }
        }
        let callback = job.callback_url.clone().filter(|_| terminal);
        if wanted.is_empty() && callback.is_none() {
            return Ok(());
        }
        let snapshot = if terminal {
            let tasks = db::jobs::tasks_of(db, std::slice::from_ref(&job.id)).await?;
            Some(convert::job(job, &tasks))
        } else {
            None
        };
        let event_id = format!("evt_{}", event.cursor);
        let body = body(&event_id, &event, &job.account, snapshot.as_ref()).to_string();
        let callback_body = match (Family::parse(&job.family), &snapshot) {
            // The family's own result shape, the image inlined when sent.
            (Some(Family::ImageEditor), Some(snapshot)) => {
                callbacks::image_editor_result(snapshot, callbacks::ObjectAs::Base64).to_string()
            }
            _ => body.clone(),
        };
        for endpoint in wanted {
            store::enqueue(
                db,
                store::NewDelivery {
                    tenant_id,
                    endpoint_id: &endpoint.id,
                    url: &endpoint.url,
                    event_id: &event_id,
                    job_id: &job.id,
                    body: &body,
                },
            )
            .await?;
        }
        if let Some(url) = callback {
            let endpoint = store::callback_endpoint(db, tenant_id).await?;
            store::enqueue(
                db,
                store::NewDelivery {
                    tenant_id,
                    endpoint_id: &endpoint.id,
                    url: &url,
                    event_id: &event_id,
                    job_id: &job.id,
                    body: &callback_body,
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Queues the batch's one callback once its last job is terminal. Every job's terminal event
    /// checks; the event id is the batch's, so the callback is queued once however many look.
    async fn fan_out_batch<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        job: &job::Model,
        batch_id: &str,
    ) -> Result<(), DbErr> {
        let Some(batch) = db::batches::find(db, &job.account_id, batch_id).await? else {
            return Ok(());
        };
        let Some(url) = batch.callback_url.clone() else {
            return Ok(());
        };
        if db::batches::unfinished(db, &job.account_id, batch_id).await? > 0 {
            return Ok(());
        }
        let models = db::batches::jobs(db, &job.account_id, batch_id).await?;
        let ids: Vec<String> = models.iter().map(|j| j.id.clone()).collect();
        let tasks = db::jobs::tasks_of(db, &ids).await?;
        let jobs: Vec<pb::Job> = models.iter().map(|j| convert::job(j, &tasks)).collect();
        let event_id = callbacks::batch_event_id(&job.account_id, batch_id);
        let body = match Family::parse(&batch.family) {
            Some(Family::ImageEditor) => callbacks::image_editor_batch(batch_id, &jobs),
            _ => json!({
                "id": event_id,
                "type": "batch.finished",
                "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "batch_id": batch_id,
                "account": job.account,
                "data": {
                    "batch_id": batch_id,
                    "family": batch.family,
                    "total": batch.total,
                    "jobs": jobs.iter().map(job_json).collect::<Vec<_>>(),
                },
            }),
        }
        .to_string();
        let endpoint = store::callback_endpoint(db, &batch.tenant_id).await?;
        store::enqueue(
            db,
            store::NewDelivery {
                tenant_id: &batch.tenant_id,
                endpoint_id: &endpoint.id,
                url: &url,
                event_id: &event_id,
                job_id: &job.id,
                body: &body,
            },
        )
        .await
    }

    /// One attempt of one delivery, recorded whatever happens.
    async fn deliver(&self, delivery: store::Delivery) {
        let span = tracing::info_span!("webhook", delivery_id = %delivery.id, job_id = %delivery.job_id, event_id = %delivery.event_id);
        self.attempt(&delivery).instrument(span).await;
    }

    async fn attempt(&self, delivery: &store::Delivery) {
        let secret = match self.secret_of(delivery).await {
            Ok(Some(secret)) => secret,
            Ok(None) => {
                self.finish(delivery, 0, "the endpoint was deleted".into(), false, true)
                    .await;
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the endpoint; the lease will expire");
                return;
            }
        };
        let (status, error, delivered, permanent) = self.post(delivery, &secret).await;
        self.finish(delivery, status, error, delivered, permanent)
            .await;
    }

    async fn secret_of(&self, delivery: &store::Delivery) -> Result<Option<String>, DbErr> {
        if delivery.endpoint_id.starts_with("we_callback_") {
            return Ok(Some(
                store::callback_endpoint(&self.db, &delivery.tenant_id)
                    .await?
                    .secret,
            ));
        }
        Ok(
            store::endpoint(&self.db, &delivery.tenant_id, &delivery.endpoint_id)
                .await?
                .map(|e| e.secret),
        )
    }

    /// Posts the body; returns (status, error, delivered, permanent failure).
    async fn post(&self, delivery: &store::Delivery, secret: &str) -> (i32, String, bool, bool) {
        let url = match url::Url::parse(&delivery.url) {
            Ok(url) => url,
            Err(e) => return (0, format!("invalid URL: {e}"), false, true),
        };
        if let Err(refused) = atelier_netguard::check_url(&self.policy, &url) {
            return (0, refused.to_string(), false, true);
        }
        // Images a family's body carries are read, and links minted, as the body is sent, so a
        // retried delivery carries live ones and the outbox row stays small.
        let body = match callbacks::expand(&self.links, &delivery.body).await {
            Ok(body) => body,
            Err(e) => {
                return (
                    0,
                    format!("reading the result from storage: {e}"),
                    false,
                    false,
                )
            }
        };
        let body = crate::links::webhook_body(&self.links, &body).await;
        let t = now_ms() / 1000;
        let signature = sign(secret, t, &body);
        let sent = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Atelier-Signature", format!("t={t},v1={signature}"))
            .header("Atelier-Event-Id", &delivery.event_id)
            .body(body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                let code = i32::from(status.as_u16());
                if status.is_success() {
                    (code, String::new(), true, false)
                } else if status.is_redirection() {
                    (code, "redirects are not followed".into(), false, false)
                } else {
                    (code, format!("answered {status}"), false, false)
                }
            }
            Err(e) => {
                let blocked = std::iter::successors(std::error::Error::source(&e), |s| s.source())
                    .any(|s| s.is::<atelier_netguard::BlockedHost>());
                (0, network_error(&e), false, blocked)
            }
        }
    }

    async fn finish(
        &self,
        delivery: &store::Delivery,
        status: i32,
        error: String,
        delivered: bool,
        permanent: bool,
    ) {
        let attempt = delivery.attempts + 1;
        let elapsed = now_ms() - delivery.created_at;
        let window = i64::try_from(self.settings.retry_window.as_millis()).unwrap_or(i64::MAX);
        let give_up = permanent || (attempt >= MIN_ATTEMPTS && elapsed >= window);
        let next_attempt_at = (!delivered && !give_up).then(|| now_ms() + self.backoff_ms(attempt));
        let outcome = store::Outcome {
            status,
            error,
            delivered,
            next_attempt_at,
        };
        let result = if delivered {
            "delivered"
        } else if give_up {
            "given_up"
        } else {
            "retrying"
        };
        self.metrics.webhook_delivery(result);
        match store::record(&self.db, delivery, &self.settings.owner, &outcome).await {
            Ok(true) => tracing::info!(
                attempt,
                status,
                result,
                error = %outcome.error,
                "webhook attempt recorded"
            ),
            Ok(false) => tracing::warn!("webhook lease lost before the attempt was recorded"),
            Err(e) => tracing::warn!(error = %e, "recording the webhook attempt failed"),
        }
    }

    /// Doubling from the base per attempt, at most an hour.
    fn backoff_ms(&self, attempt: i32) -> i64 {
        let factor = 2f64.powi(attempt.saturating_sub(1).clamp(0, 30));
        let pause = self
            .settings
            .retry_base
            .mul_f64(factor.min(1e6))
            .min(MAX_BACKOFF);
        i64::try_from(pause.as_millis()).unwrap_or(i64::MAX)
    }
}

/// `hex(HMAC-SHA256(secret, "t.body"))`.
pub fn sign(secret: &str, t: i64, body: &str) -> String {
    // HMAC takes keys of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn network_error(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn terminal_state(event: &pb::JobEvent) -> Option<JobState> {
    match &event.event {
        Some(pb::job_event::Event::JobState(s)) => {
            JobState::from_number(s.state).filter(|s| s.is_terminal())
        }
        _ => None,
    }
}

/// The word of a protobuf number, `unspecified` for one it does not name.
fn word<W: Word>(value: i32) -> &'static str {
    W::from_number(value).map_or("unspecified", W::as_str)
}

/// The JSON body of an event: `id`, `type`, `created_at`, `job_id`, `sequence`, and `data` (the whole
/// job for terminal events, the change itself otherwise).
fn body(event_id: &str, event: &pb::JobEvent, account: &str, job: Option<&pb::Job>) -> Value {
    use pb::job_event::Event;
    let (kind, data) = match (&event.event, job) {
        (Some(Event::JobState(_)), Some(job)) => (
            format!(
                "job.{}",
                terminal_state(event).map_or("finished", JobState::as_str)
            ),
            job_json(job),
        ),
        (Some(Event::JobState(s)), None) => (
            "job.state".to_string(),
            json!({ "state": word::<JobState>(s.state) }),
        ),
        (Some(Event::TaskState(s)), _) => (
            "task.state".to_string(),
            json!({
                "task_id": s.task_id,
                "state": word::<TaskState>(s.state),
                "attempts": s.attempts,
                "failure": s.failure.as_ref().map(failure_json),
            }),
        ),
        (Some(Event::Progress(p)), _) => (
            "task.progress".to_string(),
            json!({ "task_id": p.task_id, "stage": p.stage, "percent": p.percent }),
        ),
        (Some(Event::Log(l)), _) => (
            "job.log".to_string(),
            json!({ "task_id": l.task_id, "level": l.level, "message": l.message, "origin": l.origin }),
        ),
        (Some(Event::Output(o)), _) => (
            "task.output".to_string(),
            json!({ "task_id": o.task_id, "output": o.output.as_ref().map(output_json) }),
        ),
        (Some(Event::Queue(q)), _) => (
            "job.queue".to_string(),
            json!({ "position": q.position, "estimated_seconds": q.estimated_seconds }),
        ),
        (Some(Event::SourceFetched(f)), _) => ("task.source_fetched".to_string(), {
            // The task and what was read (the view of the source's info), side by side.
            let mut data = json!({ "task_id": f.task_id });
            let info = f
                .source
                .as_ref()
                .map(|s| atelier_views::json(&atelier_views::SourceInfo::from_pb(s)));
            if let (Some(data), Some(Value::Object(info))) = (data.as_object_mut(), info) {
                data.extend(info);
            }
            data
        }),
        (None, _) => ("unknown".to_string(), Value::Null),
    };
    let created_at = event
        .time
        .as_ref()
        .map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
        .and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    json!({
        "id": event_id,
        "type": kind,
        "created_at": created_at,
        "job_id": event.job_id,
        "account": account,
        "sequence": event.sequence,
        "data": data,
    })
}

fn failure_json(f: &pb::Failure) -> Value {
    atelier_views::json(&atelier_views::Failure::from_pb(f))
}

fn output_json(o: &pb::Output) -> Value {
    atelier_views::json(&atelier_views::Output::from_pb(o))
}

/// The job as the REST API shows it; a job whose kind or state this replica has no word for (an
/// older replica delivering a newer one's job) shows as null.
fn job_json(job: &pb::Job) -> Value {
    match atelier_views::Job::try_from(job) {
        Ok(job) => atelier_views::json(&job),
        Err(unknown) => {
            tracing::warn!(job_id = %job.id, "webhook body without its job: {unknown}");
            Value::Null
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_timestamp_dot_body() {
        let direct = |text: &str| {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").expect("key");
            mac.update(text.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(sign("whsec_test", 12, "{\"a\":1}"), direct("12.{\"a\":1}"));
        assert_ne!(sign("whsec_test", 13, "{}"), direct("12.{}"));
        // The HMAC itself is the standard one (RFC 4231, test case 2).
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
