//! The processor's Prometheus metrics, served on their own HTTP port (`--metrics-listen`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// `kind` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// transform, basic_clean, edit, generate or pose_set.
    pub kind: &'static str,
}

/// `kind` and `result` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindResultLabels {
    /// The task kind.
    pub kind: &'static str,
    /// succeeded, partially_succeeded, failed or cancelled.
    pub result: &'static str,
}

/// `provider` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// The configured provider name.
    pub provider: String,
}

/// `provider` and `result` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderResultLabels {
    /// The configured provider name.
    pub provider: String,
    /// ok, rate_limited, server_error, timeout, network_error, refused, rejected, bad_response,
    /// cancelled.
    pub result: &'static str,
}

/// `tenant`, `account`, `provider` and `model` labels: what each account spends upstream.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UsageLabels {
    /// The tenant id.
    pub tenant: String,
    /// The account the job is charged to.
    pub account: String,
    /// The configured provider name.
    pub provider: String,
    /// The configured model id.
    pub model: String,
}

fn duration_histogram() -> Histogram {
    // 50 ms to about 7 minutes.
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

/// Every metric the processor keeps.
#[derive(Debug)]
pub struct Metrics {
    /// `atelier_processor_tasks_total{kind,result}`: finished task attempts.
    pub tasks: Family<KindResultLabels, Counter>,
    /// `atelier_processor_task_duration_seconds{kind}`: attempt duration from acceptance to the end.
    pub task_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// `atelier_processor_tasks_in_flight`: attempts running now.
    pub tasks_in_flight: Gauge,
    /// `atelier_processor_engine_runs_total{kind}`: local engine runs.
    pub engine_runs: Family<KindLabels, Counter>,
    /// `atelier_processor_cache_hits_total{kind}`: tasks served from the content cache.
    pub cache_hits: Family<KindLabels, Counter>,
    /// `atelier_processor_cache_misses_total{kind}`: cacheable tasks that had to run.
    pub cache_misses: Family<KindLabels, Counter>,
    /// `atelier_processor_provider_calls_total{provider,result}`: calls to model providers.
    pub provider_calls: Family<ProviderResultLabels, Counter>,
    /// `atelier_processor_provider_calls_in_flight{provider}`: provider calls in progress now.
    pub provider_calls_in_flight: Family<ProviderLabels, Gauge>,
    /// `atelier_processor_provider_usage_calls_total{tenant,account,provider,model}`.
    pub usage_calls: Family<UsageLabels, Counter>,
    /// `atelier_processor_provider_usage_images_total{…}`: images the provider returned.
    pub usage_images: Family<UsageLabels, Counter>,
    /// `atelier_processor_provider_usage_failures_total{…}`: calls that failed.
    pub usage_failures: Family<UsageLabels, Counter>,
    /// `atelier_processor_provider_usage_seconds_total{…}`: time spent in provider calls.
    pub usage_seconds: Family<UsageLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
}

impl Metrics {
    /// The metrics, registered in a new registry under the `atelier_processor` prefix.
    pub fn new() -> (Self, Registry) {
        let metrics = Self {
            tasks: Family::default(),
            task_duration: Family::new_with_constructor(duration_histogram),
            tasks_in_flight: Gauge::default(),
            engine_runs: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            provider_calls: Family::default(),
            provider_calls_in_flight: Family::default(),
            usage_calls: Family::default(),
            usage_images: Family::default(),
            usage_failures: Family::default(),
            usage_seconds: Family::default(),
        };
        let mut registry = Registry::with_prefix("atelier_processor");
        registry.register(
            "tasks",
            "Task attempts finished, by kind and result",
            metrics.tasks.clone(),
        );
        registry.register_with_unit(
            "task_duration",
            "Task attempt duration, by kind",
            Unit::Seconds,
            metrics.task_duration.clone(),
        );
        registry.register(
            "tasks_in_flight",
            "Task attempts running now",
            metrics.tasks_in_flight.clone(),
        );
        registry.register(
            "engine_runs",
            "Runs of the local image engine, by kind",
            metrics.engine_runs.clone(),
        );
        registry.register(
            "cache_hits",
            "Tasks served from the content cache, by kind",
            metrics.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "Cacheable tasks that found no cached result, by kind",
            metrics.cache_misses.clone(),
        );
        registry.register(
            "provider_calls",
            "Calls to model providers, by provider and result",
            metrics.provider_calls.clone(),
        );
        registry.register(
            "provider_calls_in_flight",
            "Calls to model providers in progress, by provider",
            metrics.provider_calls_in_flight.clone(),
        );
        registry.register(
            "provider_usage_calls",
            "Calls to model providers, by tenant, account, provider and model",
            metrics.usage_calls.clone(),
        );
        registry.register(
            "provider_usage_images",
            "Images returned by model providers, by tenant, account, provider and model",
            metrics.usage_images.clone(),
        );
        registry.register(
            "provider_usage_failures",
            "Failed calls to model providers, by tenant, account, provider and model",
            metrics.usage_failures.clone(),
        );
        registry.register_with_unit(
            "provider_usage",
            "Time spent in model provider calls, by tenant, account, provider and model",
            Unit::Seconds,
            metrics.usage_seconds.clone(),
        );
        (metrics, registry)
    }
}
