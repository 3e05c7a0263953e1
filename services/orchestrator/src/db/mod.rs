//! Database access, one module per aggregate. Only the orchestrator touches the database.

pub mod accounts;
pub mod batches;
pub mod entities;
pub mod events;
pub mod jobs;
pub mod retention;
pub mod stats;
pub mod studio;
pub mod tasks;
pub mod tenants;
pub mod uploads;
pub mod usage;
pub mod webhooks;

use std::time::Duration;

use atelier_migrations::{Migrator, MigratorTrait};
use atelier_types::TaskState;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseBackend, DatabaseConnection, DbErr,
    Statement, Value,
};

/// Who may see a job: the tenant, and with an account named, only that account's jobs.
#[derive(Clone, Debug)]
pub struct Scope {
    pub tenant_id: String,
    pub account_id: Option<String>,
}

/// How long a call waits for a connection of the pool by default: a server that restarts within it
/// is waited for; one that stays away longer fails the call with 1009 UNAVAILABLE.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens the database with the default [`ACQUIRE_TIMEOUT`].
pub async fn connect(url: &str) -> Result<DatabaseConnection, DbErr> {
    connect_with(url, ACQUIRE_TIMEOUT).await
}

/// A pooled PostgreSQL connection idle at least this long is checked (a round trip) before it is
/// handed out; one in steady use is not.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// Opens the database. SQLite gets a single connection: SQLite has one writer at a time anyway, and
/// one connection turns "database is locked" failures into an orderly queue. A PostgreSQL
/// connection that sat idle for [`CHECK_IDLE_AFTER`] is checked before it is handed out, so those a
/// restarted server dropped are replaced by new ones instead of failing calls; a connection in
/// steady use goes out unchecked, which spares a busy replica a round trip per transaction.
pub async fn connect_with(
    url: &str,
    acquire_timeout: Duration,
) -> Result<DatabaseConnection, DbErr> {
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
    if url.starts_with("postgres") {
        return connect_postgres(&url, acquire_timeout).await;
    }
    let mut options = ConnectOptions::new(url.clone());
    // sea-orm hands both timeouts to the pool's acquire timeout; the later one wins.
    options
        .sqlx_logging(false)
        .test_before_acquire(true)
        .acquire_timeout(acquire_timeout);
    options.max_connections(1).min_connections(1);
    let db = Database::connect(options).await?;
    if db.get_database_backend() == DatabaseBackend::Sqlite {
        db.execute_unprepared(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        )
        .await?;
    }
    Ok(db)
}

async fn connect_postgres(
    url: &str,
    acquire_timeout: Duration,
) -> Result<DatabaseConnection, DbErr> {
    use sqlx::ConnectOptions as _;
    let conn_err = |e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e));
    let options: sqlx::postgres::PgConnectOptions = url.parse().map_err(conn_err)?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(32)
        .min_connections(2)
        .acquire_timeout(acquire_timeout)
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < CHECK_IDLE_AFTER {
                    return Ok(true);
                }
                // A connection that fails the check is closed, and the pool takes another.
                Ok(sqlx::Connection::ping(conn).await.is_ok())
            })
        })
        // Every statement here is short, so compiling one (JIT) only ever adds time: a plan the
        // planner overestimates (a scan that a LIMIT ends early, on a large history) would pass
        // `jit_above_cost` and spend tens of milliseconds compiling a statement that runs in one.
        .connect_with(
            options
                .options([("jit", "off")])
                .disable_statement_logging(),
        )
        .await
        .map_err(conn_err)?;
    Ok(sea_orm::SqlxPostgresConnector::from_sqlx_postgres_pool(
        pool,
    ))
}

/// Brings the schema up to date.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    Migrator::up(db, None).await
}

/// The count of every waiting task (the queue ahead of a job not inserted yet), with no parameter.
/// Its states are written into the statement, as the queue index's are.
pub fn count_waiting() -> String {
    format!(
        "SELECT COUNT(*) FROM tasks WHERE state IN ({})",
        state_words(&TaskState::WAITING)
    )
}

/// State words as a SQL list (`'queued', 'running'`), for statements that name the states a
/// partial index is built on: written into the text, as the index's are, every plan can use the
/// index. The words come from the state enums, never from outside.
pub fn state_words<S: atelier_types::Word>(states: &[S]) -> String {
    states
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
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

/// A task's outputs as stored: length-delimited messages (an unreadable tail is left out).
pub fn stored_outputs(mut blob: &[u8]) -> Vec<atelier_proto::v1::Output> {
    use prost::Message as _;
    let mut out = Vec::new();
    while !blob.is_empty() {
        match atelier_proto::v1::Output::decode_length_delimited(&mut blob) {
            Ok(o) => out.push(o),
            Err(_) => break,
        }
    }
    out
}

/// Whether an error says the database cannot be reached now (down, restarting, connection lost,
/// no connection free in time) rather than that the statement was wrong: calls answer 1009, and
/// work that is done is recorded again once the database is back.
pub fn is_unavailable(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    let sqlx = match err {
        DbErr::ConnectionAcquire(_) => return true,
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        DbErr::Conn(RuntimeErr::Internal(_)) => return true,
        _ => return false,
    };
    match sqlx {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exception; 57P01-57P03: the server is shutting down or starting.
        sqlx::Error::Database(e) => e
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57P")),
        _ => false,
    }
}

/// Whether the database gave up a transaction because of others running at the same time (a
/// deadlock, a serialization failure): trying it again is the remedy.
pub fn is_conflict(err: &DbErr) -> bool {
    use sea_orm::RuntimeErr;
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(sqlx::Error::Database(e)))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx::Error::Database(e))) => {
            e.code().is_some_and(|c| c == "40P01" || c == "40001")
        }
        _ => false,
    }
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
