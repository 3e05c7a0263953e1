//! What every part of a running orchestrator shares.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use atelier_storage::{Links, Storage};
use sea_orm::DatabaseConnection;

use crate::dispatch::{DispatchHandle, Processors};
use atelier_codes::family::Family;
use atelier_proto::v1 as pb;

use crate::domain::{units_per_task, Kind};
use crate::events::EventBus;

/// Settings that shape the API's answers.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Quota units per task (generate: per image) by kind.
    pub prices: HashMap<Kind, i64>,
    /// Prices of one family's jobs, overriding `prices` for that kind.
    pub family_prices: HashMap<(Family, Kind), i64>,
    /// Most jobs an account may have queued or running (2003 beyond).
    pub max_active_jobs: u32,
    /// Largest upload accepted by UploadSource.
    pub max_upload_bytes: u64,
    /// Deadline of one attempt of a local kind (transform, basic_clean); also how long a worker
    /// outside Atelier may hold such a task (ReportTask).
    pub attempt_timeout: Duration,
    /// Deadline of one attempt of a model kind (edit, generate, pose_set).
    pub model_attempt_timeout: Duration,
}

impl Policy {
    /// The deadline of one attempt of `kind`: longer for kinds that call a model provider.
    pub fn attempt_timeout(&self, kind: Kind) -> Duration {
        attempt_timeout(kind, self.attempt_timeout, self.model_attempt_timeout)
    }
}

/// The deadline of one attempt of `kind`: `local` for the engine's kinds, `model` for kinds that call
/// a model provider.
pub fn attempt_timeout(kind: Kind, local: Duration, model: Duration) -> Duration {
    match kind {
        Kind::Transform | Kind::BasicClean => local,
        _ => model,
    }
}

impl Policy {
    /// The price of one task of a job: the family's price for the kind if the operator set one,
    /// else the kind's; generate is priced per image, every other kind per task.
    pub fn unit_price(&self, family: Option<Family>, kind: Kind, params: &pb::JobParams) -> i64 {
        let per_unit = family
            .and_then(|f| self.family_prices.get(&(f, kind)))
            .or_else(|| self.prices.get(&kind))
            .copied()
            .unwrap_or(1);
        if kind == Kind::Generate {
            per_unit.saturating_mul(units_per_task(params))
        } else {
            per_unit
        }
    }
}

/// Shared state of the services and the dispatcher.
#[derive(Clone)]
pub struct Context {
    pub db: DatabaseConnection,
    pub bus: EventBus,
    pub storage: Storage,
    /// Mints the result links of outputs when jobs and events are read.
    pub links: Links,
    pub policy: Arc<Policy>,
    pub dispatch: DispatchHandle,
    /// The processors and what they offer (3006 at submit, ListModels).
    pub processors: Processors,
    pub metrics: crate::metrics::Metrics,
    /// Retention defaults and the sweeper's pace.
    pub retention: crate::retention::Settings,
    /// The replica's background tasks (watch streams among them) and its shutdown token.
    pub tasks: atelier_telemetry::service::Tasks,
    /// API keys the authentication layer remembers; emptied when a key is revoked.
    pub keys: crate::auth::KeyCache,
    /// Recent mean run time of each kind, for queue estimates.
    pub run_times: RunTimes,
}

/// The mean run time of each kind's recent tasks ([`crate::db::jobs::mean_task_ms`]), read at most
/// once per [`RunTimes::FRESH`] per kind: an estimate in seconds does not need a query per answer,
/// and every submit and every new watcher of a queued job asks for one. A mean past its freshness is
/// still answered while one read in the background replaces it, so no answer waits for the read and
/// a burst of submits does not read it once each.
#[derive(Clone)]
pub struct RunTimes {
    known: Arc<std::sync::Mutex<HashMap<Kind, KnownMean>>>,
    /// Where the background reads go.
    db: DatabaseConnection,
}

#[derive(Clone, Copy)]
struct KnownMean {
    read_at: std::time::Instant,
    mean: f64,
    /// A read that will replace it is under way.
    reading: bool,
}

impl RunTimes {
    /// How long a mean is used before it is read again.
    pub const FRESH: Duration = Duration::from_secs(2);

    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            known: Arc::default(),
            db,
        }
    }

    /// The mean run time of `kind` in milliseconds (0 when none ran yet). The first read of a kind
    /// goes through `db` (the caller's transaction, on SQLite the only connection).
    pub async fn mean_ms<C: sea_orm::ConnectionTrait>(
        &self,
        db: &C,
        kind: Kind,
    ) -> Result<f64, sea_orm::DbErr> {
        let known = match self.known.lock() {
            Ok(mut known) => known.get_mut(&kind).map(|k| {
                let read = k.read_at.elapsed() >= Self::FRESH && !k.reading;
                k.reading |= read;
                (k.mean, read)
            }),
            Err(_) => None,
        };
        match known {
            Some((mean, read)) => {
                if read {
                    let this = self.clone();
                    tokio::spawn(async move {
                        let mean = crate::db::jobs::mean_task_ms(&this.db, kind).await;
                        if let Err(e) = &mean {
                            tracing::debug!(error = %e, "reading a kind's mean run time failed");
                        }
                        this.store(kind, mean.ok());
                    });
                }
                Ok(mean)
            }
            None => {
                let mean = crate::db::jobs::mean_task_ms(db, kind).await?;
                self.store(kind, Some(mean));
                Ok(mean)
            }
        }
    }

    /// Keeps a mean just read; `None` (the read failed) keeps the old one, to be read again.
    fn store(&self, kind: Kind, mean: Option<f64>) {
        if let Ok(mut known) = self.known.lock() {
            match (mean, known.get_mut(&kind)) {
                (Some(mean), _) => {
                    known.insert(
                        kind,
                        KnownMean {
                            read_at: std::time::Instant::now(),
                            mean,
                            reading: false,
                        },
                    );
                }
                (None, Some(old)) => old.reading = false,
                (None, None) => {}
            }
        }
    }
}
