//! Accounts, uploads, logs, models, statistics and health as REST JSON.

use atelier_proto::v1 as pb;
use serde::Serialize;
use utoipa::ToSchema;

use super::enums::{JobKind, JobState};
use super::time;

fn some_text(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// An end user of the tenant, with its quota.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Account {
    pub tenant_id: String,
    /// The tenant's own id for the account.
    pub external_id: String,
    /// Quota units left.
    pub balance: i64,
    pub member: bool,
    #[schema(format = DateTime)]
    pub membership_expires_at: Option<String>,
    pub active_jobs: u32,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

impl From<&pb::Account> for Account {
    fn from(a: &pb::Account) -> Self {
        Self {
            tenant_id: a.tenant_id.clone(),
            external_id: a.external_id.clone(),
            balance: a.balance,
            member: a.member,
            membership_expires_at: time::to_text(a.membership_expires_at.as_ref()),
            active_jobs: a.active_jobs,
            created_at: time::to_text(a.created_at.as_ref()),
        }
    }
}

/// One change of an account's balance.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LedgerEntry {
    pub id: String,
    /// `grant`, `charge` or `refund`.
    pub kind: String,
    /// The signed change of the balance.
    pub amount: i64,
    pub reason: String,
    pub job_id: Option<String>,
    pub task_id: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

/// One page of an account's ledger, newest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Ledger {
    pub entries: Vec<LedgerEntry>,
    /// Empty on the last page.
    pub next_page_token: String,
}

impl From<&pb::ListLedgerResponse> for Ledger {
    fn from(page: &pb::ListLedgerResponse) -> Self {
        Self {
            entries: page
                .entries
                .iter()
                .map(|e| LedgerEntry {
                    id: e.id.clone(),
                    kind: e.kind.clone(),
                    amount: e.amount,
                    reason: e.reason.clone(),
                    job_id: some_text(&e.job_id),
                    task_id: some_text(&e.task_id),
                    created_at: time::to_text(e.created_at.as_ref()),
                })
                .collect(),
            next_page_token: page.next_page_token.clone(),
        }
    }
}

/// A stored source image, usable as `{"upload_id": id}` in a job's sources.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Upload {
    pub id: String,
    pub bytes: u64,
    pub sha256: String,
    pub filename: Option<String>,
    pub content_type: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

impl From<&pb::Upload> for Upload {
    fn from(u: &pb::Upload) -> Self {
        Self {
            id: u.id.clone(),
            bytes: u.bytes,
            sha256: u.sha256.clone(),
            filename: some_text(&u.filename),
            content_type: some_text(&u.content_type),
            created_at: time::to_text(u.created_at.as_ref()),
        }
    }
}

/// One log line of a job.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LogEntry {
    pub sequence: u64,
    #[schema(format = DateTime)]
    pub time: Option<String>,
    pub task_id: Option<String>,
    pub level: String,
    pub message: String,
    /// `orchestrator` or `processor`.
    pub origin: String,
}

/// A page of a job's log lines, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LogPage {
    pub entries: Vec<LogEntry>,
    pub next_page_token: Option<String>,
}

impl From<&pb::ListJobLogsResponse> for LogPage {
    fn from(page: &pb::ListJobLogsResponse) -> Self {
        Self {
            entries: page
                .entries
                .iter()
                .map(|e| {
                    let line = e.line.clone().unwrap_or_default();
                    LogEntry {
                        sequence: e.sequence,
                        time: time::to_text(e.time.as_ref()),
                        task_id: some_text(&line.task_id),
                        level: line.level,
                        message: line.message,
                        origin: line.origin,
                    }
                })
                .collect(),
            next_page_token: some_text(&page.next_page_token),
        }
    }
}

/// A model a processor offers.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Model {
    pub id: String,
    pub provider: String,
    pub kinds: Vec<JobKind>,
}

/// The models the processors offer.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ModelList {
    pub models: Vec<Model>,
}

impl From<&pb::ListModelsResponse> for ModelList {
    fn from(r: &pb::ListModelsResponse) -> Self {
        Self {
            models: r
                .models
                .iter()
                .map(|m| Model {
                    id: m.id.clone(),
                    provider: m.provider.clone(),
                    kinds: m
                        .kinds
                        .iter()
                        .filter_map(|k| JobKind::from_number(*k))
                        .collect(),
                })
                .collect(),
        }
    }
}

/// Jobs in one state.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct StateCount {
    pub state: JobState,
    pub jobs: u64,
}

/// Jobs of one kind.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct KindStats {
    pub kind: JobKind,
    pub jobs: u64,
    pub succeeded: u64,
    pub failed: u64,
}

/// What calls to one upstream provider and model used, summed over the caller's jobs.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ProviderUsage {
    /// The provider's configured name.
    pub provider: String,
    /// The model id as jobs name it.
    pub model: String,
    /// Calls made, failed ones included.
    pub calls: u64,
    /// Images the provider returned.
    pub images: u64,
    /// Calls that failed (the next provider may have been tried).
    pub failures: u64,
    /// Time spent in the calls.
    pub seconds: f64,
}

/// Totals and rates over the caller's jobs.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Stats {
    pub by_state: Vec<StateCount>,
    pub by_kind: Vec<KindStats>,
    pub completion_rate: f64,
    pub failure_rate: f64,
    pub cache_hit_rate: f64,
    pub mean_duration_seconds: f64,
    pub p95_duration_seconds: f64,
    /// Upstream provider usage of the same jobs (every attempt, failed ones and fallbacks included),
    /// one entry per provider and model.
    pub provider_usage: Vec<ProviderUsage>,
}

fn finite(value: f64) -> f64 {
    if value.is_finite() {
        value
    } else {
        0.0
    }
}

impl From<&pb::Stats> for Stats {
    fn from(s: &pb::Stats) -> Self {
        Self {
            by_state: s
                .by_state
                .iter()
                .filter_map(|c| {
                    Some(StateCount {
                        state: JobState::from_number(c.state)?,
                        jobs: c.jobs,
                    })
                })
                .collect(),
            by_kind: s
                .by_kind
                .iter()
                .filter_map(|k| {
                    Some(KindStats {
                        kind: JobKind::from_number(k.kind)?,
                        jobs: k.jobs,
                        succeeded: k.succeeded,
                        failed: k.failed,
                    })
                })
                .collect(),
            // JSON has no NaN: a rate over nothing reads as 0.
            completion_rate: finite(s.completion_rate),
            failure_rate: finite(s.failure_rate),
            cache_hit_rate: finite(s.cache_hit_rate),
            mean_duration_seconds: finite(s.mean_duration_seconds),
            p95_duration_seconds: finite(s.p95_duration_seconds),
            provider_usage: s
                .provider_usage
                .iter()
                .map(|u| ProviderUsage {
                    provider: u.provider.clone(),
                    model: u.model.clone(),
                    calls: u.calls,
                    images: u.images,
                    failures: u.failures,
                    seconds: finite(u.seconds),
                })
                .collect(),
        }
    }
}

/// Whether the gateway and the orchestrator behind it serve.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// The orchestrator's gRPC health: `serving`, `not_serving` or `unreachable`.
    pub orchestrator: String,
}
