//! Studio jobs: `studio_job_tasks` maps each task of a job SubmitStudioJob made to the pair it works
//! on. It is written in the transaction that inserts the job, and read in the transaction that
//! records a task's success, which writes the task's first output into the pair.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0007_studio_jobs"
    }
}

const UP: &str = "
CREATE TABLE studio_job_tasks (
    task_id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    pair_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX studio_job_tasks_job ON studio_job_tasks (job_id);
CREATE INDEX studio_job_tasks_pair ON studio_job_tasks (pair_id)
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(m, UP).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.get_connection()
            .execute_unprepared("DROP TABLE studio_job_tasks")
            .await?;
        Ok(())
    }
}
