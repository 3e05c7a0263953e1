//! Deletion and retention.
//!
//! * `object_refs`: every stored object (output or thumbnail) a job names. A job served from the
//!   content cache names the objects of the job that made them, so an object is removed only when
//!   no job names it any more.
//! * `object_deletions`: the outbox of objects to remove from storage, written in the same
//!   transaction that removes the rows naming them, and drained afterwards (again by the sweeper
//!   after a crash), so a deletion always finishes.
//! * Per-tenant retention in days (NULL: the orchestrator's defaults).
//!
//! Existing outputs are recorded in `object_refs` here, from the stored task outputs.

use atelier_proto::v1 as pb;
use prost::Message;
use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DatabaseBackend, Statement, Value};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0003_retention"
    }
}

const TABLES: &str = "
CREATE TABLE object_refs (
    object_key TEXT NOT NULL,
    job_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    PRIMARY KEY (object_key, job_id)
);
CREATE INDEX object_refs_job ON object_refs (job_id);
CREATE TABLE object_deletions (
    object_key TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
ALTER TABLE tenants ADD COLUMN retention_output_days INTEGER NULL;
ALTER TABLE tenants ADD COLUMN retention_upload_days INTEGER NULL;
ALTER TABLE tenants ADD COLUMN retention_event_days INTEGER NULL;
CREATE INDEX jobs_finished ON jobs (finished_at);
CREATE INDEX uploads_created ON uploads (created_at);
CREATE INDEX job_events_created ON job_events (created_at)
";

/// Tasks read per round of the backfill.
const PAGE: i64 = 500;

fn statement(backend: DatabaseBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = if backend == DatabaseBackend::Postgres {
        let mut out = String::with_capacity(sql.len() + 8);
        let mut n = 0;
        for ch in sql.chars() {
            if ch == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(ch);
            }
        }
        out
    } else {
        sql.to_owned()
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// The keys of the outputs (and their thumbnails) in a stored task's outputs blob.
pub fn output_keys(blob: &[u8]) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = blob;
    while !rest.is_empty() {
        let Ok(output) = pb::Output::decode_length_delimited(&mut rest) else {
            break;
        };
        if !output.key.is_empty() {
            keys.push(output.key);
        }
        if let Some(t) = output.thumbnail.filter(|t| !t.key.is_empty()) {
            keys.push(t.key);
        }
    }
    keys
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        let backend = m.get_database_backend();
        for sql in TABLES.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            db.execute_unprepared(sql).await?;
        }
        let mut after = String::new();
        loop {
            let rows = db
                .query_all(statement(
                    backend,
                    "SELECT t.id, t.job_id, j.tenant_id, t.outputs FROM tasks t JOIN jobs j ON j.id = t.job_id \
                     WHERE t.outputs IS NOT NULL AND t.id > ? ORDER BY t.id LIMIT ?",
                    vec![after.clone().into(), PAGE.into()],
                ))
                .await?;
            let Some(last) = rows.last() else {
                break;
            };
            after = last.try_get_by_index(0)?;
            for row in &rows {
                let job_id: String = row.try_get_by_index(1)?;
                let tenant_id: String = row.try_get_by_index(2)?;
                let blob: Vec<u8> = row.try_get_by_index(3)?;
                for key in output_keys(&blob) {
                    db.execute(statement(
                        backend,
                        "INSERT INTO object_refs (object_key, job_id, tenant_id) VALUES (?, ?, ?) \
                         ON CONFLICT (object_key, job_id) DO NOTHING",
                        vec![key.into(), job_id.clone().into(), tenant_id.clone().into()],
                    ))
                    .await?;
                }
            }
            if (rows.len() as i64) < PAGE {
                break;
            }
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for statement in [
            "DROP INDEX job_events_created",
            "DROP INDEX uploads_created",
            "DROP INDEX jobs_finished",
            "ALTER TABLE tenants DROP COLUMN retention_event_days",
            "ALTER TABLE tenants DROP COLUMN retention_upload_days",
            "ALTER TABLE tenants DROP COLUMN retention_output_days",
            "DROP TABLE object_deletions",
            "DROP TABLE object_refs",
        ] {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }
}
