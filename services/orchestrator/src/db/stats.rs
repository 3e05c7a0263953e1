//! GetStats: what happened to a tenant's (or account's) jobs created in a time range.
//!
//! Rates are over terminal jobs: completion = (succeeded + partially succeeded) / terminal, failure =
//! failed / terminal (cancelled jobs count in neither numerator). The cache hit rate is over succeeded
//! tasks. Durations are wall time from submit to the terminal state of jobs that finished. Provider
//! usage sums what every attempt of those jobs (failed ones and fallbacks included) used upstream, per
//! provider and model.

use std::collections::BTreeMap;

use atelier_proto::v1 as pb;
use sea_orm::{ConnectionTrait, DbErr, Value};

use super::jobs::Scope;
use super::statement;
use crate::domain::{JobState, Kind, TaskState};

/// The filter on `jobs` (aliased `j`) for a scope and a creation range, with its values.
fn filter(scope: &Scope, start: Option<i64>, end: Option<i64>) -> (String, Vec<Value>) {
    let mut sql = String::from("j.tenant_id = ?");
    let mut values: Vec<Value> = vec![scope.tenant_id.clone().into()];
    if let Some(account) = &scope.account_id {
        sql.push_str(" AND j.account_id = ?");
        values.push(account.clone().into());
    }
    if let Some(start) = start {
        sql.push_str(" AND j.created_at >= ?");
        values.push(start.into());
    }
    if let Some(end) = end {
        sql.push_str(" AND j.created_at < ?");
        values.push(end.into());
    }
    (sql, values)
}

/// Counts, rates and durations for the scope's jobs created in `[start, end)`.
pub async fn compute<C: ConnectionTrait>(
    db: &C,
    scope: &Scope,
    start: Option<i64>,
    end: Option<i64>,
) -> Result<pb::Stats, DbErr> {
    let backend = db.get_database_backend();
    let (condition, values) = filter(scope, start, end);

    let rows = db
        .query_all(statement(
            backend,
            &format!("SELECT j.state, j.kind, COUNT(*) FROM jobs j WHERE {condition} GROUP BY j.state, j.kind"),
            values.clone(),
        ))
        .await?;
    let mut by_state: BTreeMap<i32, u64> = BTreeMap::new();
    let mut by_kind: BTreeMap<i32, pb::KindStats> = BTreeMap::new();
    for row in rows {
        let state: String = row.try_get_by_index(0)?;
        let kind: String = row.try_get_by_index(1)?;
        let count = u64::try_from(row.try_get_by_index::<i64>(2)?).unwrap_or_default();
        let (Some(state), Some(kind)) = (JobState::parse(&state), Kind::parse(&kind)) else {
            continue;
        };
        *by_state.entry(state.to_proto() as i32).or_default() += count;
        let entry = by_kind
            .entry(kind.to_proto() as i32)
            .or_insert_with(|| pb::KindStats {
                kind: kind.to_proto() as i32,
                ..Default::default()
            });
        entry.jobs += count;
        match state {
            JobState::Succeeded | JobState::PartiallySucceeded => entry.succeeded += count,
            JobState::Failed => entry.failed += count,
            _ => {}
        }
    }
    let count = |states: &[JobState]| -> u64 {
        states
            .iter()
            .map(|s| by_state.get(&(s.to_proto() as i32)).copied().unwrap_or(0))
            .sum()
    };
    let completed = count(&[JobState::Succeeded, JobState::PartiallySucceeded]);
    let failed = count(&[JobState::Failed]);
    let terminal = completed + failed + count(&[JobState::Cancelled]);

    let cache = db
        .query_one(statement(
            backend,
            &format!(
                "SELECT COUNT(*), SUM(CASE WHEN t.from_cache THEN 1 ELSE 0 END) FROM tasks t \
                 JOIN jobs j ON j.id = t.job_id WHERE {condition} AND t.state = ?"
            ),
            values
                .iter()
                .cloned()
                .chain([TaskState::Succeeded.into()])
                .collect(),
        ))
        .await?;
    let (succeeded_tasks, cached_tasks) = match cache {
        Some(row) => (
            row.try_get_by_index::<i64>(0)?,
            row.try_get_by_index::<Option<i64>>(1)?.unwrap_or(0),
        ),
        None => (0, 0),
    };

    let durations = db
        .query_all(statement(
            backend,
            &format!(
                "SELECT j.finished_at - j.created_at FROM jobs j WHERE {condition} \
                 AND j.finished_at IS NOT NULL AND j.state IN (?, ?, ?) \
                 ORDER BY 1"
            ),
            values
                .iter()
                .cloned()
                .chain([
                    JobState::Succeeded.into(),
                    JobState::PartiallySucceeded.into(),
                    JobState::Failed.into(),
                ])
                .collect(),
        ))
        .await?;
    let mut seconds = Vec::with_capacity(durations.len());
    for row in durations {
        seconds.push(row.try_get_by_index::<i64>(0)?.max(0) as f64 / 1000.0);
    }

    let provider_usage = provider_usage(db, &condition, values).await?;

    Ok(pb::Stats {
        by_state: by_state
            .into_iter()
            .map(|(state, jobs)| pb::StateCount { state, jobs })
            .collect(),
        by_kind: by_kind.into_values().collect(),
        completion_rate: ratio(completed, terminal),
        failure_rate: ratio(failed, terminal),
        cache_hit_rate: ratio(
            u64::try_from(cached_tasks).unwrap_or_default(),
            u64::try_from(succeeded_tasks).unwrap_or_default(),
        ),
        mean_duration_seconds: if seconds.is_empty() {
            0.0
        } else {
            seconds.iter().sum::<f64>() / seconds.len() as f64
        },
        p95_duration_seconds: percentile(&seconds, 0.95),
        provider_usage,
    })
}

/// Usage of the filtered jobs' attempts, per provider and model.
async fn provider_usage<C: ConnectionTrait>(
    db: &C,
    condition: &str,
    values: Vec<Value>,
) -> Result<Vec<pb::ProviderUsage>, DbErr> {
    let rows = db
        .query_all(statement(
            db.get_database_backend(),
            &format!(
                // PostgreSQL sums BIGINT as NUMERIC: cast back.
                "SELECT u.provider, u.model, CAST(SUM(u.calls) AS BIGINT), CAST(SUM(u.images) AS BIGINT), \
                 CAST(SUM(u.failures) AS BIGINT), SUM(u.seconds) \
                 FROM provider_usage u JOIN jobs j ON j.id = u.job_id WHERE {condition} \
                 GROUP BY u.provider, u.model ORDER BY u.provider, u.model"
            ),
            values,
        ))
        .await?;
    let mut usage = Vec::with_capacity(rows.len());
    for row in rows {
        let count = |i: usize| -> Result<u64, DbErr> {
            Ok(u64::try_from(row.try_get_by_index::<Option<i64>>(i)?.unwrap_or(0)).unwrap_or(0))
        };
        usage.push(pb::ProviderUsage {
            provider: row.try_get_by_index(0)?,
            model: row.try_get_by_index(1)?,
            calls: count(2)?,
            images: count(3)?,
            failures: count(4)?,
            seconds: row.try_get_by_index::<Option<f64>>(5)?.unwrap_or(0.0),
        });
    }
    Ok(usage)
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Nearest-rank percentile of sorted values; 0 for none.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentile() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.95), 95.0);
        assert_eq!(percentile(&values[..1], 0.95), 1.0);
        assert_eq!(percentile(&[], 0.95), 0.0);
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.95), 3.0);
    }
}
