//! Indexes of the work in flight, so that finished history does not slow the present.
//!
//! Every query of the dispatch loop, the sweeper, the submit path and the observer asks for jobs or
//! tasks that are not terminal yet. Partial indexes hold only those rows: they stay as small as the
//! work in flight however many finished jobs the tables keep, and a row leaves them when it ends.
//!
//! * `tasks_runnable`: the claim (`state IN ('queued', 'retry_wait') AND run_after <= now ORDER BY
//!   run_after, created_at, idx`), queue positions and queue depth.
//! * `tasks_leased`: running tasks by lease expiry (the sweeper's expired leases).
//! * `tasks_waiting`: queued tasks by age (the sweeper's queue timeout).
//! * `tasks_unfinished`: every unfinished task by job (jobs past their deadline, the task gauges).
//! * `tasks_finished`: finished tasks by finish time (recent run times of a kind, the gauges of
//!   recently finished tasks); unfinished tasks, whose `finished_at` is NULL, stay out of it.
//! * `jobs_active`: an account's queued and running jobs (the active-jobs limit, a batch's
//!   unfinished jobs, the job gauges).
//!
//! A query uses a partial index only when its condition names the index's states, as literals.
//! PostgreSQL proves that from a bound state too (in the custom plan it makes for the values), and
//! the full `tasks_dispatch` index on `(state, run_after)`, which indexed every finished task and was
//! rewritten on every state change, goes. SQLite matches only literal states, so it keeps
//! `tasks_dispatch` for the queries that bind their states.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0008_hot_indexes"
    }
}

const UP: &str = "
CREATE INDEX tasks_runnable ON tasks (run_after, created_at, idx) WHERE state IN ('queued', 'retry_wait');
CREATE INDEX tasks_leased ON tasks (lease_expires_at) WHERE state = 'running';
CREATE INDEX tasks_waiting ON tasks (created_at) WHERE state = 'queued';
CREATE INDEX tasks_unfinished ON tasks (job_id) WHERE state IN ('queued', 'running', 'retry_wait');
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX jobs_active ON jobs (account_id, batch_id) WHERE state IN ('queued', 'running')
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(m, UP).await?;
        if m.get_database_backend() == DatabaseBackend::Postgres {
            crate::run_all(m, ["DROP INDEX tasks_dispatch"]).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        if m.get_database_backend() == DatabaseBackend::Postgres {
            crate::run_all(
                m,
                ["CREATE INDEX tasks_dispatch ON tasks (state, run_after)"],
            )
            .await?;
        }
        crate::run_all(
            m,
            [
                "DROP INDEX jobs_active",
                "DROP INDEX tasks_finished",
                "DROP INDEX tasks_unfinished",
                "DROP INDEX tasks_waiting",
                "DROP INDEX tasks_leased",
                "DROP INDEX tasks_runnable",
            ],
        )
        .await
    }
}
