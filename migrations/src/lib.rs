//! The job-orchestrator's schema. Times are unix milliseconds (`BIGINT`) so that both SQLite and
//! PostgreSQL compare them the same way; protobuf-shaped values (params, sources, outputs, event
//! payloads) are stored as encoded protobuf bytes.

pub use sea_orm_migration::prelude::*;

mod m0001_initial;
mod m0002_notifications;
mod m0003_retention;
mod m0004_provider_usage;
mod m0005_batches;
mod m0006_studio;
mod m0007_studio_jobs;
mod m0008_hot_indexes;
mod m0009_event_rows;
mod m0010_in_flight_indexes;
mod m0011_account_submits;

/// Runs the `;`-separated statements of `script`, in order (no statement holds a `;` of its own).
pub(crate) async fn run_script(m: &SchemaManager<'_>, script: &str) -> Result<(), DbErr> {
    let db = m.get_connection();
    for statement in script.split(';') {
        let statement = statement.trim();
        if !statement.is_empty() {
            db.execute_unprepared(statement).await?;
        }
    }
    Ok(())
}

/// Runs `statements`, in order.
pub(crate) async fn run_all<'a>(
    m: &SchemaManager<'_>,
    statements: impl IntoIterator<Item = &'a str>,
) -> Result<(), DbErr> {
    let db = m.get_connection();
    for statement in statements {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// Every migration, in order.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m0001_initial::Migration),
            Box::new(m0002_notifications::Migration),
            Box::new(m0003_retention::Migration),
            Box::new(m0004_provider_usage::Migration),
            Box::new(m0005_batches::Migration),
            Box::new(m0006_studio::Migration),
            Box::new(m0007_studio_jobs::Migration),
            Box::new(m0008_hot_indexes::Migration),
            Box::new(m0009_event_rows::Migration),
            Box::new(m0010_in_flight_indexes::Migration),
            Box::new(m0011_account_submits::Migration),
        ]
    }
}
