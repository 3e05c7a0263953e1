//! Prometheus metrics of a replica, served on their own port (`--metrics-listen`).
//!
//! Counters and histograms are counted where things happen; the gauges of jobs and tasks by state and
//! of queue depth are read from the database by the observer every few seconds, so they are the same
//! on every replica. The unfinished states (queued, running, retry_wait) are counted as they are now;
//! a terminal state counts what reached it in the last minute, so the count never reads the history.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// The replica's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    jobs_submitted: Family<Labels, Counter>,
    jobs: Family<Labels, Gauge>,
    tasks: Family<Labels, Gauge>,
    queue_depth: Gauge,
    attempts: Family<Labels, Counter>,
    task_duration: Family<Labels, Histogram>,
    cache_hits: Counter,
    webhook_deliveries: Family<Labels, Counter>,
    retention_removed: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("atelier");
        let jobs_submitted = Family::<Labels, Counter>::default();
        registry.register(
            "jobs_submitted",
            "Jobs accepted by SubmitJob, by kind",
            jobs_submitted.clone(),
        );
        let jobs = Family::<Labels, Gauge>::default();
        registry.register(
            "jobs",
            "Jobs by state: queued and running now, terminal states reached in the last minute",
            jobs.clone(),
        );
        let tasks = Family::<Labels, Gauge>::default();
        registry.register(
            "tasks",
            "Tasks by state: queued, running and retry_wait now, terminal states reached in the last minute",
            tasks.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Tasks waiting to run (queued or waiting for a retry)",
            queue_depth.clone(),
        );
        let attempts = Family::<Labels, Counter>::default();
        registry.register(
            "task_attempts",
            "Task attempts run by this replica, by kind and result",
            attempts.clone(),
        );
        let task_duration = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
            ])
        });
        registry.register(
            "task_duration_seconds",
            "Duration of task attempts run by this replica, by kind",
            task_duration.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "cache_hits",
            "Tasks served from the content cache",
            cache_hits.clone(),
        );
        let webhook_deliveries = Family::<Labels, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by result (delivered, retrying, given_up)",
            webhook_deliveries.clone(),
        );
        // Shown at 0 before the first delivery, so dashboards and alerts find the series.
        for result in ["delivered", "retrying", "given_up"] {
            drop(webhook_deliveries.get_or_create(&labels(&[("result", result)])));
        }
        let retention_removed = Family::<Labels, Counter>::default();
        registry.register(
            "retention_removed",
            "What deletion and the retention sweeper removed, by kind (jobs, objects, events, uploads)",
            retention_removed.clone(),
        );
        for what in ["jobs", "objects", "events", "uploads"] {
            drop(retention_removed.get_or_create(&labels(&[("what", what)])));
        }
        Self {
            registry: Arc::new(registry),
            jobs_submitted,
            jobs,
            tasks,
            queue_depth,
            attempts,
            task_duration,
            cache_hits,
            webhook_deliveries,
            retention_removed,
        }
    }

    /// The registry to serve.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    pub fn job_submitted(&self, kind: &str) {
        self.jobs_submitted
            .get_or_create(&labels(&[("kind", kind)]))
            .inc();
    }

    /// An attempt ended: `result` is succeeded, failed, retry, handed_back or lost.
    pub fn attempt(&self, kind: &str, result: &str, seconds: f64, from_cache: bool) {
        self.attempts
            .get_or_create(&labels(&[("kind", kind), ("result", result)]))
            .inc();
        self.task_duration
            .get_or_create(&labels(&[("kind", kind)]))
            .observe(seconds);
        if from_cache {
            self.cache_hits.inc();
        }
    }

    pub fn webhook_delivery(&self, result: &str) {
        self.webhook_deliveries
            .get_or_create(&labels(&[("result", result)]))
            .inc();
    }

    /// `n` things of a kind (jobs, objects, events, uploads) were removed.
    pub fn removed(&self, what: &str, n: u64) {
        self.retention_removed
            .get_or_create(&labels(&[("what", what)]))
            .inc_by(n);
    }

    /// Sets the state gauges from a fresh count.
    pub fn set_counts(&self, jobs: &[(String, i64)], tasks: &[(String, i64)], queue_depth: i64) {
        for (state, n) in jobs {
            self.jobs
                .get_or_create(&labels(&[("state", state)]))
                .set(*n);
        }
        for (state, n) in tasks {
            self.tasks
                .get_or_create(&labels(&[("state", state)]))
                .set(*n);
        }
        self.queue_depth.set(queue_depth);
    }
}
