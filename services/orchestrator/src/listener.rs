//! The PostgreSQL `LISTEN` of a replica: wakes this replica's watchers for events other replicas
//! recorded, hands them live-only events announced anywhere, and stops attempts running here that
//! another replica cancelled.

use tokio_util::sync::CancellationToken;

use crate::auth::KeyCache;
use crate::db::events::{self, CANCEL_CHANNEL, EVENTS_CHANNEL, KEYS_CHANNEL, LIVE_CHANNEL};
use crate::dispatch::DispatchHandle;
use crate::events::EventBus;

/// Follows PostgreSQL notifications so that this replica's watchers see events recorded by other
/// replicas, attempts running here stop when another replica cancels their task, and a key revoked
/// on another replica is no longer remembered here. Runs until `shutdown`.
pub async fn listen_postgres(
    pool: sqlx::PgPool,
    bus: EventBus,
    dispatch: DispatchHandle,
    keys: KeyCache,
    shutdown: CancellationToken,
) {
    loop {
        let listener = async {
            let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
            listener
                .listen_all([EVENTS_CHANNEL, LIVE_CHANNEL, CANCEL_CHANNEL, KEYS_CHANNEL])
                .await?;
            // Watchers wait for wake-ups only: whatever was announced while this replica was not
            // listening, they read now; and a key revoked meanwhile is forgotten.
            bus.notify_all();
            keys.forget_all();
            loop {
                // `None`: the connection was lost and is made again; notifications sent meanwhile
                // are lost, so every watcher reads the log once more.
                let Some(n) = listener.try_recv().await? else {
                    bus.notify_all();
                    keys.forget_all();
                    continue;
                };
                match n.channel() {
                    EVENTS_CHANNEL => bus.notify(n.payload()),
                    LIVE_CHANNEL => match events::decode_live(n.payload()) {
                        Some(event) => bus.publish(&event.job_id.clone(), event),
                        None => tracing::warn!("unreadable live event notification"),
                    },
                    CANCEL_CHANNEL => dispatch.cancel(&[n.payload().to_string()]),
                    KEYS_CHANNEL => keys.forget_all(),
                    _ => {}
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            result = listener => {
                if let Err(e) = result {
                    tracing::warn!(error = %e, "PostgreSQL listener failed; reconnecting");
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}
