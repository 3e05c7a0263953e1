//! Upstream provider usage of task attempts, as the processor reports it (`ProcessEvent.usage`).

use atelier_proto::v1 as pb;
use sea_orm::{ConnectionTrait, DbErr};

use super::statement;
use super::tasks::Lease;
use crate::domain::now_ms;

/// Stores what the attempt `run` used, one row per report. Recording the same run again (its end
/// was committed but the connection broke before the answer) changes nothing.
pub async fn record<C: ConnectionTrait>(
    db: &C,
    lease: &Lease,
    run: &str,
    usage: &[pb::ProviderUsage],
) -> Result<(), DbErr> {
    let now = now_ms();
    for (n, u) in usage.iter().enumerate() {
        let count = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        let seconds = if u.seconds.is_finite() {
            u.seconds.max(0.0)
        } else {
            0.0
        };
        db.execute(statement(
            db.get_database_backend(),
            "INSERT INTO provider_usage (id, tenant_id, account_id, account, job_id, task_id, attempt, \
             provider, model, calls, images, failures, seconds, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            vec![
                format!("{run}/{n}").into(),
                lease.job.tenant_id.clone().into(),
                lease.job.account_id.clone().into(),
                lease.job.account.clone().into(),
                lease.job.id.clone().into(),
                lease.task.id.clone().into(),
                lease.attempt.into(),
                u.provider.clone().into(),
                u.model.clone().into(),
                count(u.calls).into(),
                count(u.images).into(),
                count(u.failures).into(),
                seconds.into(),
                now.into(),
            ],
        ))
        .await?;
    }
    Ok(())
}
