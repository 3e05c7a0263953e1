//! The replica's gRPC health follows its database: SERVING while the database answers, NOT_SERVING
//! while it does not (a load balancer then sends calls elsewhere), SERVING again once it is back,
//! and NOT_SERVING for good from the start of shutdown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// The services whose health is reported: the whole server ("") and each API.
pub const SERVICES: [&str; 4] = [
    "",
    "atelier.v1.JobService",
    "atelier.v1.AccountService",
    "atelier.v1.StudioService",
];

/// Whether the database answered its last ping, for the parts that should not wait for it while it
/// is away (dispatch skips progress reports then).
#[derive(Clone, Debug)]
pub struct DatabaseState(Arc<AtomicBool>);

impl Default for DatabaseState {
    fn default() -> Self {
        // A replica is built only once its database answered.
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl DatabaseState {
    /// The database answered its last ping.
    pub fn is_up(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, up: bool) {
        self.0.store(up, Ordering::Relaxed);
    }
}

/// Pings the database every `every`; a ping not answered within `every` counts as a failure (the
/// pool would otherwise wait its whole acquire timeout for a server that is gone). Returns once
/// `shutdown` is cancelled, after reporting NOT_SERVING.
pub async fn watch_database(
    db: DatabaseConnection,
    state: DatabaseState,
    reporter: HealthReporter,
    every: Duration,
    shutdown: CancellationToken,
) {
    // build() ran the migrations: the database answered a moment ago.
    let mut serving = true;
    set(&reporter, ServingStatus::Serving).await;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        let answered = tokio::select! {
            () = shutdown.cancelled() => break,
            pinged = tokio::time::timeout(every, db.ping()) => pinged,
        };
        let up = match answered {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                if serving {
                    tracing::error!(error = %e, "the database does not answer; health is NOT_SERVING");
                }
                false
            }
            Err(_) => {
                if serving {
                    tracing::error!(
                        seconds = every.as_secs_f64(),
                        "the database did not answer in time; health is NOT_SERVING"
                    );
                }
                false
            }
        };
        if up != serving {
            if up {
                tracing::info!("the database answers again; health is SERVING");
            }
            serving = up;
            state.set(up);
            set(
                &reporter,
                if up {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                },
            )
            .await;
        }
    }
    set(&reporter, ServingStatus::NotServing).await;
}

async fn set(reporter: &HealthReporter, status: ServingStatus) {
    for service in SERVICES {
        reporter.set_service_status(service, status).await;
    }
}
