//! Database access, one module per aggregate. Only the orchestrator touches the database.

pub mod accounts;
pub mod entities;
pub mod events;
pub mod jobs;
pub mod stats;
pub mod tasks;
pub mod tenants;
pub mod uploads;
pub mod webhooks;

use std::time::Duration;

use atelier_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    Statement, Value,
};

/// Opens the database. SQLite gets a single connection: SQLite has one writer at a time anyway, and
/// one connection turns "database is locked" failures into an orderly queue.
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut url = url.to_string();
    if let Some(path) = url.strip_prefix("sqlite://") {
        let path = path.split('?').next().unwrap_or_default();
        if let Some(parent) = std::path::Path::new(path).parent() {
            if !parent.as_os_str().is_empty() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    DbErr::Custom(format!("cannot create {}: {e}", parent.display()))
                })?;
            }
        }
        if !url.contains('?') {
            url.push_str("?mode=rwc");
        }
    }
    let mut options = ConnectOptions::new(url.clone());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30));
    if url.starts_with("sqlite:") {
        options.max_connections(1).min_connections(1);
    } else {
        options.max_connections(32).min_connections(2);
    }
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        db.execute_unprepared(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        )
        .await?;
    }
    Ok(db)
}

/// Brings the schema up to date.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// A statement written with `?` placeholders, renumbered to `$n` for PostgreSQL.
pub fn statement(backend: DatabaseBackend, sql: &str, values: Vec<Value>) -> Statement {
    let sql = match backend {
        DatabaseBackend::Postgres => {
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
        }
        _ => sql.to_string(),
    };
    Statement::from_sql_and_values(backend, sql, values)
}

/// Whether an error is a unique-constraint violation (a raced insert of the same key).
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_for_postgres() {
        let s = statement(
            DatabaseBackend::Postgres,
            "UPDATE t SET a = ? WHERE b = ?",
            vec![1.into(), 2.into()],
        );
        assert_eq!(s.sql, "UPDATE t SET a = $1 WHERE b = $2");
        let s = statement(DatabaseBackend::Sqlite, "SELECT ?", vec![1.into()]);
        assert_eq!(s.sql, "SELECT ?");
    }
}
