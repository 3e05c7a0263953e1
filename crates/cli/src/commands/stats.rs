//! `stats`: what happened to the caller's jobs, and what their provider calls used upstream.

use atelier_proto::v1 as pb;
use serde_json::json;

use crate::args::StatsArgs;
use crate::client::Api;
use crate::render::{names, print_json, print_line};

/// `stats`: jobs by state and kind, rates, durations, then one line per provider and model.
pub async fn show(api: &Api, as_json: bool, args: &StatsArgs) -> anyhow::Result<()> {
    let range =
        (args.created_gte.is_some() || args.created_lt.is_some()).then_some(pb::TimeRange {
            start: args.created_gte,
            end: args.created_lt,
        });
    let request = api.call(pb::GetStatsRequest { range })?;
    let stats = api.jobs().get_stats(request).await?.into_inner();
    if as_json {
        print_json(&json!({
            "by_state": stats.by_state.iter().map(|s| json!({
                "state": names::job_state_word(s.state),
                "jobs": s.jobs,
            })).collect::<Vec<_>>(),
            "by_kind": stats.by_kind.iter().map(|k| json!({
                "kind": names::kind(k.kind),
                "jobs": k.jobs,
                "succeeded": k.succeeded,
                "failed": k.failed,
            })).collect::<Vec<_>>(),
            "completion_rate": finite(stats.completion_rate),
            "failure_rate": finite(stats.failure_rate),
            "cache_hit_rate": finite(stats.cache_hit_rate),
            "mean_duration_seconds": finite(stats.mean_duration_seconds),
            "p95_duration_seconds": finite(stats.p95_duration_seconds),
            "provider_usage": stats.provider_usage.iter().map(|u| json!({
                "provider": u.provider,
                "model": u.model,
                "calls": u.calls,
                "images": u.images,
                "failures": u.failures,
                "seconds": finite(u.seconds),
            })).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let states: Vec<String> = stats
        .by_state
        .iter()
        .map(|s| format!("{} {}", names::job_state(s.state), s.jobs))
        .collect();
    print_line(&format!("jobs: {}", none_if_empty(states.join(", "))));
    for k in &stats.by_kind {
        print_line(&format!(
            "kind {}: {} jobs, {} succeeded, {} failed",
            names::kind(k.kind),
            k.jobs,
            k.succeeded,
            k.failed
        ));
    }
    print_line(&format!(
        "completion {:.1} %, failure {:.1} %, cache hits {:.1} %, mean {:.1} s, p95 {:.1} s",
        finite(stats.completion_rate) * 100.0,
        finite(stats.failure_rate) * 100.0,
        finite(stats.cache_hit_rate) * 100.0,
        finite(stats.mean_duration_seconds),
        finite(stats.p95_duration_seconds),
    ));
    if stats.provider_usage.is_empty() {
        print_line("provider usage: none");
    }
    for u in &stats.provider_usage {
        print_line(&format!(
            "provider {} model {}: {} calls, {} images, {} failures, {:.1} s",
            u.provider,
            u.model,
            u.calls,
            u.images,
            u.failures,
            finite(u.seconds)
        ));
    }
    Ok(())
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() {
        "none".into()
    } else {
        s
    }
}

/// JSON has no NaN.
fn finite(value: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        0.0
    }
}
