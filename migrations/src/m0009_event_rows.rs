//! One stored row per job and transaction: `job_events.events` says how many events a row holds. A
//! change that records several events of one job at once (a task's start with its job's, an attempt's
//! end with its outputs, log lines and the job's end) writes one row instead of one per event. The
//! row's `sequence` is the sequence of its last event; its events carry the sequences before it. A row
//! of one event keeps the payload of a single `JobEvent`, as every row before this migration does; a
//! row of several holds them length-delimited, in order.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0009_event_rows"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(
            m,
            "ALTER TABLE job_events ADD COLUMN events INTEGER NOT NULL DEFAULT 1",
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(m, "ALTER TABLE job_events DROP COLUMN events").await
    }
}
