//! What every Atelier service does the same way when it runs in the background: its background loops
//! owned by one [`Tasks`] (so shutdown waits for all of them, for a bounded time), and one
//! [`ServiceHandle`] to find, stop and wait for a service started on a task.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::{JoinError, JoinHandle};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The background loops of one running service and the token that stops them.
///
/// Every loop is spawned here and watches [`token`](Self::token); shutdown cancels the token, then
/// [`wait`](Self::wait)s for all of them, at most for the grace period.
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    token: CancellationToken,
}

impl Tasks {
    /// No loops yet, not stopping.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancelled when the service stops; every loop ends when it is.
    pub fn token(&self) -> &CancellationToken {
        &self.token
    }

    /// Whether the service is stopping.
    pub fn is_stopping(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Resolves once the service starts stopping.
    pub async fn stopping(&self) {
        self.token.cancelled().await;
    }

    /// Runs `future` as one of the service's loops; [`wait`](Self::wait) waits for it.
    pub fn spawn<F>(&self, future: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(future)
    }

    /// Tells every loop to stop (cancels the token).
    pub fn stop(&self) {
        self.token.cancel();
    }

    /// How many loops are still running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    /// Whether no loop is running.
    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Stops every loop, accepts no new ones and waits until all have ended, but at most `grace`.
    /// Returns whether they all ended in time; those that did not are left behind (they end with the
    /// runtime).
    pub async fn wait(&self, grace: Duration) -> bool {
        self.token.cancel();
        self.tracker.close();
        match tokio::time::timeout(grace, self.tracker.wait()).await {
            Ok(()) => true,
            Err(_) => {
                tracing::warn!(
                    still_running = self.tracker.len(),
                    grace_seconds = grace.as_secs_f64(),
                    "background tasks did not end within the shutdown grace period; leaving them"
                );
                false
            }
        }
    }
}

/// A service serving on a background task (tests, tools, embedding): where it listens, how to stop
/// it and how it ended. Dropping it cancels the service without waiting.
///
/// `E` is the service's error; `M` is what it tells about its metrics endpoint (`Option<SocketAddr>`
/// when it is optional, `SocketAddr` when there always is one).
pub struct ServiceHandle<E, M = Option<SocketAddr>> {
    addr: SocketAddr,
    metrics_addr: M,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), E>>>,
}

impl<E, M> ServiceHandle<E, M>
where
    E: From<JoinError> + Send + 'static,
    M: Copy,
{
    /// Runs `serve` on a task; cancelling `shutdown` (by [`stop`](Self::stop), by drop, or by whoever
    /// holds a clone) stops it.
    pub fn spawn<F>(
        addr: SocketAddr,
        metrics_addr: M,
        shutdown: CancellationToken,
        serve: F,
    ) -> Self
    where
        F: Future<Output = Result<(), E>> + Send + 'static,
    {
        Self {
            addr,
            metrics_addr,
            task: Some(tokio::spawn(serve)),
            shutdown,
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ip:port`, for clients.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> M {
        self.metrics_addr
    }

    /// A token that stops the service when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops it gracefully, waits until it has stopped and returns how serving ended.
    pub async fn stop(mut self) -> Result<(), E> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl<E, M> Drop for ServiceHandle<E, M> {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl<E, M: fmt::Debug> fmt::Debug for ServiceHandle<E, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceHandle")
            .field("addr", &self.addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("stopping", &self.shutdown.is_cancelled())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_ends_the_loops_that_watch_the_token() {
        let tasks = Tasks::new();
        for _ in 0..3 {
            let token = tasks.token().clone();
            tasks.spawn(async move { token.cancelled().await });
        }
        assert_eq!(tasks.len(), 3);
        assert!(tasks.wait(Duration::from_secs(5)).await);
        assert!(tasks.is_empty());
    }

    #[tokio::test]
    async fn wait_gives_up_after_the_grace_period() {
        let tasks = Tasks::new();
        tasks.spawn(std::future::pending::<()>());
        assert!(!tasks.wait(Duration::from_millis(50)).await);
        assert_eq!(tasks.len(), 1);
    }

    #[tokio::test]
    async fn stop_cancels_and_returns_the_outcome() {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle: ServiceHandle<std::io::Error> = ServiceHandle::spawn(
            SocketAddr::from(([127, 0, 0, 1], 9)),
            None,
            shutdown,
            async move {
                token.cancelled().await;
                Err(std::io::Error::other("ended"))
            },
        );
        assert_eq!(handle.url(), "http://127.0.0.1:9");
        let ended = handle.stop().await;
        assert_eq!(ended.map_err(|e| e.to_string()), Err("ended".to_string()));
    }

    #[tokio::test]
    async fn drop_cancels() {
        let shutdown = CancellationToken::new();
        let token = shutdown.clone();
        let handle: ServiceHandle<std::io::Error, SocketAddr> = ServiceHandle::spawn(
            SocketAddr::from(([127, 0, 0, 1], 9)),
            SocketAddr::from(([127, 0, 0, 1], 10)),
            shutdown.clone(),
            async move {
                token.cancelled().await;
                Ok(())
            },
        );
        assert_eq!(handle.metrics_addr().port(), 10);
        drop(handle);
        assert!(shutdown.is_cancelled());
    }
}
