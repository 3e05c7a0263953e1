//! Two more indexes of the work in flight (see `m0008_hot_indexes`), each as small as the work it
//! holds however much history the tables keep:
//!
//! * `tasks_queue_order`: every waiting task (queued or waiting to retry) by its job's creation
//!   time and id. A task is created with its job and keeps the job's `created_at`, so a job's queue
//!   position is a count over this index alone, without reading a job row.
//! * `jobs_deadline`: unfinished jobs that have a deadline, by deadline (the sweeper's jobs past
//!   their deadline), so finished jobs with a deadline are never read again.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0010_in_flight_indexes"
    }
}

const UP: &str = "
CREATE INDEX tasks_queue_order ON tasks (created_at, job_id) WHERE state IN ('queued', 'retry_wait');
CREATE INDEX jobs_deadline ON jobs (deadline_at) WHERE state IN ('queued', 'running') AND deadline_at IS NOT NULL
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(m, UP).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_all(
            m,
            ["DROP INDEX jobs_deadline", "DROP INDEX tasks_queue_order"],
        )
        .await
    }
}
