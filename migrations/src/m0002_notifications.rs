//! Webhook endpoints, the delivery outbox and its attempts; the commit-ordered event cursor; the trace
//! context a job was submitted with.
//!
//! `job_events.txid` is the id of the transaction that wrote the event (PostgreSQL; 0 on SQLite, whose
//! single writer commits in id order). Readers of the account-wide stream only take events whose
//! transaction is older than every transaction still running (`pg_snapshot_xmin`), ordered by
//! `(txid, id)`, so an event that commits late can never appear behind a cursor already handed out.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0002_notifications"
    }
}

const TABLES: &str = "
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    account_id TEXT NULL,
    account TEXT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT NULL
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id);
CREATE TABLE webhook_deliveries (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    url TEXT NOT NULL,
    event_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner TEXT NULL,
    lease_expires_at BIGINT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT NULL
);
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (endpoint_id, event_id, url);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (tenant_id, job_id);
CREATE TABLE webhook_attempts (
    id TEXT PRIMARY KEY,
    delivery_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status INTEGER NOT NULL,
    error TEXT NOT NULL,
    attempted_at BIGINT NOT NULL,
    next_attempt_at BIGINT NULL,
    delivered BOOLEAN NOT NULL
);
CREATE INDEX webhook_attempts_tenant ON webhook_attempts (tenant_id, attempted_at);
CREATE TABLE webhook_cursor (
    id INTEGER PRIMARY KEY,
    txid BIGINT NOT NULL,
    event_id BIGINT NOT NULL
);
INSERT INTO webhook_cursor (id, txid, event_id) VALUES (1, 0, 0);
ALTER TABLE jobs ADD COLUMN trace_parent TEXT NULL;
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let txid = match m.get_database_backend() {
            DatabaseBackend::Postgres => {
                "ALTER TABLE job_events ADD COLUMN txid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint);"
            }
            _ => "ALTER TABLE job_events ADD COLUMN txid BIGINT NOT NULL DEFAULT 0;",
        };
        for statement in TABLES
            .split(';')
            .chain([
                txid,
                "CREATE INDEX job_events_cursor ON job_events (txid, id)",
            ])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for statement in [
            "DROP INDEX job_events_cursor",
            "ALTER TABLE job_events DROP COLUMN txid",
            "ALTER TABLE jobs DROP COLUMN trace_parent",
            "DROP TABLE webhook_cursor",
            "DROP TABLE webhook_attempts",
            "DROP TABLE webhook_deliveries",
            "DROP TABLE webhook_endpoints",
        ] {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
