//! What each task attempt's calls to upstream model providers used, one row per attempt, provider and
//! model: GetStats sums them per provider and model for a tenant or an account.
//!
//! `id` is `<run>/<n>`: a run id the orchestrator chooses once per attempt and the report's place among
//! the attempt's reports, so an attempt whose end is recorded again (the connection broke after the
//! commit) is counted once.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0004_provider_usage"
    }
}

const UP: &str = "
CREATE TABLE provider_usage (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    account TEXT NOT NULL,
    job_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    provider TEXT NOT NULL,
    model TEXT NOT NULL,
    calls BIGINT NOT NULL,
    images BIGINT NOT NULL,
    failures BIGINT NOT NULL,
    seconds DOUBLE PRECISION NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX provider_usage_tenant ON provider_usage (tenant_id, account_id, created_at);
CREATE INDEX provider_usage_job ON provider_usage (job_id);
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(m, UP).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP TABLE provider_usage")
            .await?;
        Ok(())
    }
}
