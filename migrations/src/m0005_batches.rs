//! Batches and client families.
//!
//! * `jobs.family`: the client family a job came through (`image_editor`, `task_api`, `generator`,
//!   `image_edit`, or empty for Atelier's own API); it selects per-family prices and the shape of
//!   the job's callback body.
//! * `jobs.batch_id`: the batch a job was submitted in (SubmitBatch). The jobs of one batch hold one
//!   unit of the account's active-jobs limit: active units are the distinct `COALESCE(batch_id, id)`
//!   of the account's queued and running jobs, which the index on `(account_id, batch_id)` serves.
//! * `batches`: one row per batch, its id unique per account, with the callback that gets one
//!   delivery once every job of the batch is terminal, and the number of jobs it accepted.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0005_batches"
    }
}

const UP: &str = "
ALTER TABLE jobs ADD COLUMN family TEXT NOT NULL DEFAULT '';
ALTER TABLE jobs ADD COLUMN batch_id TEXT NULL;
CREATE INDEX jobs_account_batch ON jobs (account_id, batch_id);
CREATE TABLE batches (
    id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    callback_url TEXT NULL,
    family TEXT NOT NULL DEFAULT '',
    total INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, id)
);
CREATE INDEX batches_tenant ON batches (tenant_id, created_at)
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(m, UP).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_all(
            m,
            [
                "DROP TABLE batches",
                "DROP INDEX jobs_account_batch",
                "ALTER TABLE jobs DROP COLUMN batch_id",
                "ALTER TABLE jobs DROP COLUMN family",
            ],
        )
        .await
    }
}
