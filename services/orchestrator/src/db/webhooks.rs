//! Webhook endpoints, the delivery outbox and the record of every attempt.
//!
//! The job event log is the outbox's source: events are written in the same transaction as the change
//! they describe, and the fan-out turns them into delivery rows, advancing one durable cursor in the
//! same transaction. Deliveries are claimed with a lease like tasks, so a replica that dies mid-call
//! leaves the delivery to another after the lease, and a delivery answered 2xx is never sent again.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};

use super::events::Cursor;
use super::statement;
use crate::domain::now_ms;

/// The events an endpoint asks for.
pub const TERMINAL: &str = "terminal";
pub const PROGRESS: &str = "progress";

/// A registered endpoint. The one with an empty `url` stands for jobs' own `callback_url`s and holds
/// the secret that signs them.
#[derive(Clone, Debug, FromQueryResult)]
pub struct Endpoint {
    pub id: String,
    pub tenant_id: String,
    pub account_id: Option<String>,
    pub account: Option<String>,
    pub url: String,
    pub secret: String,
    pub events: String,
    pub created_at: i64,
}

impl Endpoint {
    /// Whether the endpoint takes terminal (or, with `progress`, the other) events.
    pub fn wants(&self, terminal: bool) -> bool {
        let kind = if terminal { TERMINAL } else { PROGRESS };
        self.events.split(',').any(|e| e == kind)
    }
}

/// One event to deliver to one URL.
#[derive(Clone, Debug, FromQueryResult)]
pub struct Delivery {
    pub id: String,
    pub tenant_id: String,
    pub endpoint_id: String,
    pub url: String,
    pub event_id: String,
    pub job_id: String,
    pub body: String,
    pub attempts: i32,
    pub created_at: i64,
}

/// One recorded attempt.
#[derive(Clone, Debug, FromQueryResult)]
pub struct Attempt {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub job_id: String,
    pub attempt: i32,
    pub status: i32,
    pub error: String,
    pub attempted_at: i64,
    pub next_attempt_at: Option<i64>,
    pub delivered: bool,
}

const ENDPOINT_COLUMNS: &str =
    "id, tenant_id, account_id, account, url, secret, events, created_at";

/// A new secret: `whsec_` and 32 random bytes in hex.
fn new_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 32]>()))
}

/// Registers an endpoint.
pub async fn create_endpoint<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    account: Option<(&str, &str)>,
    url: &str,
    events: &[&str],
) -> Result<Endpoint, DbErr> {
    let endpoint = Endpoint {
        id: format!("we_{}", uuid::Uuid::now_v7().simple()),
        tenant_id: tenant_id.to_string(),
        account_id: account.map(|(id, _)| id.to_string()),
        account: account.map(|(_, external)| external.to_string()),
        url: url.to_string(),
        secret: new_secret(),
        events: events.join(","),
        created_at: now_ms(),
    };
    insert_endpoint(db, &endpoint, false).await?;
    Ok(endpoint)
}

async fn insert_endpoint<C: ConnectionTrait>(
    db: &C,
    e: &Endpoint,
    if_absent: bool,
) -> Result<(), DbErr> {
    let conflict = if if_absent {
        " ON CONFLICT (id) DO NOTHING"
    } else {
        ""
    };
    db.execute(statement(
        db.get_database_backend(),
        &format!("INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?){conflict}"),
        vec![
            e.id.clone().into(),
            e.tenant_id.clone().into(),
            e.account_id.clone().into(),
            e.account.clone().into(),
            e.url.clone().into(),
            e.secret.clone().into(),
            e.events.clone().into(),
            e.created_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The tenant's endpoint for jobs' `callback_url`s, created on first use with its own secret.
pub async fn callback_endpoint<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
) -> Result<Endpoint, DbErr> {
    let id = format!("we_callback_{tenant_id}");
    let endpoint = Endpoint {
        id: id.clone(),
        tenant_id: tenant_id.to_string(),
        account_id: None,
        account: None,
        url: String::new(),
        secret: new_secret(),
        events: TERMINAL.to_string(),
        created_at: now_ms(),
    };
    insert_endpoint(db, &endpoint, true).await?;
    Endpoint::find_by_statement(statement(
        db.get_database_backend(),
        &format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?"),
        vec![id.into()],
    ))
    .one(db)
    .await?
    .ok_or_else(|| DbErr::RecordNotFound("callback endpoint".into()))
}

/// Live endpoints of a tenant; with `account_id`, those of that account and the tenant-wide ones.
pub async fn endpoints<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    account_id: Option<&str>,
) -> Result<Vec<Endpoint>, DbErr> {
    let mut values: Vec<Value> = vec![tenant_id.into()];
    let mut sql = format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = ? AND deleted_at IS NULL AND url <> ''"
    );
    if let Some(account_id) = account_id {
        sql.push_str(" AND (account_id IS NULL OR account_id = ?)");
        values.push(account_id.into());
    }
    sql.push_str(" ORDER BY created_at, id");
    Endpoint::find_by_statement(statement(db.get_database_backend(), &sql, values))
        .all(db)
        .await
}

/// One live registered endpoint of the tenant.
pub async fn endpoint<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    id: &str,
) -> Result<Option<Endpoint>, DbErr> {
    Endpoint::find_by_statement(statement(
        db.get_database_backend(),
        &format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints \
             WHERE tenant_id = ? AND id = ? AND deleted_at IS NULL AND url <> ''"
        ),
        vec![tenant_id.into(), id.into()],
    ))
    .one(db)
    .await
}

/// Stops deliveries to an endpoint (pending ones are given up). Returns it, or `None` if unknown.
pub async fn delete_endpoint<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    account_id: Option<&str>,
    id: &str,
) -> Result<Option<Endpoint>, DbErr> {
    let found = endpoint(db, tenant_id, id)
        .await?
        .filter(|e| account_id.is_none() || e.account_id.as_deref() == account_id);
    let Some(endpoint) = found else {
        return Ok(None);
    };
    let backend = db.get_database_backend();
    let now = now_ms();
    db.execute(statement(
        backend,
        "UPDATE webhook_endpoints SET deleted_at = ? WHERE id = ?",
        vec![now.into(), id.into()],
    ))
    .await?;
    db.execute(statement(
        backend,
        "UPDATE webhook_deliveries SET state = 'failed', finished_at = ? WHERE endpoint_id = ? AND state = 'pending'",
        vec![now.into(), id.into()],
    ))
    .await?;
    Ok(Some(endpoint))
}

/// Reads the fan-out cursor, locking it; `None` when another replica holds it (PostgreSQL).
pub async fn lock_cursor<C: ConnectionTrait>(db: &C) -> Result<Option<Cursor>, DbErr> {
    let backend = db.get_database_backend();
    let sql = if backend == sea_orm::DatabaseBackend::Postgres {
        "SELECT txid, event_id FROM webhook_cursor WHERE id = 1 FOR UPDATE SKIP LOCKED"
    } else {
        "SELECT txid, event_id FROM webhook_cursor WHERE id = 1"
    };
    let row = db.query_one(statement(backend, sql, Vec::new())).await?;
    row.map(|r| {
        Ok(Cursor {
            txid: r.try_get_by_index(0)?,
            id: r.try_get_by_index(1)?,
            seen: Cursor::WHOLE_ROW,
        })
    })
    .transpose()
}

/// Moves the fan-out cursor.
pub async fn save_cursor<C: ConnectionTrait>(db: &C, cursor: Cursor) -> Result<(), DbErr> {
    db.execute(statement(
        db.get_database_backend(),
        "UPDATE webhook_cursor SET txid = ?, event_id = ? WHERE id = 1",
        vec![cursor.txid.into(), cursor.id.into()],
    ))
    .await?;
    Ok(())
}

/// What the fan-out queues for one event and URL.
pub struct NewDelivery<'a> {
    pub tenant_id: &'a str,
    pub endpoint_id: &'a str,
    pub url: &'a str,
    pub event_id: &'a str,
    pub job_id: &'a str,
    pub body: &'a str,
}

/// Queues a delivery, once per (endpoint, event, url).
pub async fn enqueue<C: ConnectionTrait>(db: &C, d: NewDelivery<'_>) -> Result<(), DbErr> {
    let now = now_ms();
    db.execute(statement(
        db.get_database_backend(),
        "INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, url, event_id, job_id, body, state, attempts, next_attempt_at, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT (endpoint_id, event_id, url) DO NOTHING",
        vec![
            format!("wd_{}", uuid::Uuid::now_v7().simple()).into(),
            d.tenant_id.into(),
            d.endpoint_id.into(),
            d.url.into(),
            d.event_id.into(),
            d.job_id.into(),
            d.body.into(),
            now.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Leases up to `limit` deliveries that are due.
pub async fn claim<C: ConnectionTrait>(
    db: &C,
    owner: &str,
    lease_ms: i64,
    limit: u64,
) -> Result<Vec<Delivery>, DbErr> {
    let backend = db.get_database_backend();
    let lock = if backend == sea_orm::DatabaseBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let now = now_ms();
    Delivery::find_by_statement(statement(
        backend,
        &format!(
            "UPDATE webhook_deliveries SET lease_owner = ?, lease_expires_at = ? WHERE id IN \
             (SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_at <= ? \
              AND (lease_expires_at IS NULL OR lease_expires_at < ?) ORDER BY next_attempt_at LIMIT ?{lock}) \
             RETURNING id, tenant_id, endpoint_id, url, event_id, job_id, body, attempts, created_at"
        ),
        vec![
            owner.into(),
            (now + lease_ms).into(),
            now.into(),
            now.into(),
            i64::try_from(limit).unwrap_or(i64::MAX).into(),
        ],
    ))
    .all(db)
    .await
}

/// How an attempt ended.
pub struct Outcome {
    /// HTTP status, 0 for a network error or a refused address.
    pub status: i32,
    pub error: String,
    pub delivered: bool,
    /// When to try again; `None` with `delivered == false` gives the delivery up.
    pub next_attempt_at: Option<i64>,
}

/// Records an attempt and moves the delivery on, if this replica still holds its lease. Returns
/// false when the lease was lost (another replica took the delivery over).
pub async fn record<C: ConnectionTrait>(
    db: &C,
    delivery: &Delivery,
    owner: &str,
    outcome: &Outcome,
) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let now = now_ms();
    let attempt = delivery.attempts + 1;
    let (state, next, finished) = match (outcome.delivered, outcome.next_attempt_at) {
        (true, _) => ("delivered", now, Some(now)),
        (false, Some(at)) => ("pending", at, None),
        (false, None) => ("failed", now, Some(now)),
    };
    let updated = db
        .execute(statement(
            backend,
            "UPDATE webhook_deliveries SET state = ?, attempts = ?, next_attempt_at = ?, finished_at = ?, \
             lease_owner = NULL, lease_expires_at = NULL WHERE id = ? AND lease_owner = ? AND state = 'pending'",
            vec![
                state.into(),
                attempt.into(),
                next.into(),
                finished.into(),
                delivery.id.clone().into(),
                owner.into(),
            ],
        ))
        .await?;
    if updated.rows_affected() == 0 {
        return Ok(false);
    }
    db.execute(statement(
        backend,
        "INSERT INTO webhook_attempts (id, delivery_id, tenant_id, endpoint_id, event_id, job_id, attempt, status, error, attempted_at, next_attempt_at, delivered) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            format!("wa_{}", uuid::Uuid::now_v7().simple()).into(),
            delivery.id.clone().into(),
            delivery.tenant_id.clone().into(),
            delivery.endpoint_id.clone().into(),
            delivery.event_id.clone().into(),
            delivery.job_id.clone().into(),
            attempt.into(),
            outcome.status.into(),
            outcome.error.clone().into(),
            now.into(),
            outcome.next_attempt_at.into(),
            outcome.delivered.into(),
        ],
    ))
    .await?;
    Ok(true)
}

/// Filters of the attempt listing.
#[derive(Default)]
pub struct AttemptFilter<'a> {
    pub endpoint_id: Option<&'a str>,
    pub job_id: Option<&'a str>,
    /// Only deliveries of this account's jobs and endpoints.
    pub account_id: Option<&'a str>,
    /// Page after this attempt id (ids grow with time).
    pub after: Option<&'a str>,
}

/// A tenant's attempts, oldest first.
pub async fn attempts<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    filter: AttemptFilter<'_>,
    limit: u64,
) -> Result<Vec<Attempt>, DbErr> {
    let mut sql = String::from(
        "SELECT a.id, a.endpoint_id, a.event_id, a.job_id, a.attempt, a.status, a.error, a.attempted_at, \
         a.next_attempt_at, a.delivered FROM webhook_attempts a WHERE a.tenant_id = ?",
    );
    let mut values: Vec<Value> = vec![tenant_id.into()];
    if let Some(endpoint) = filter.endpoint_id {
        sql.push_str(" AND a.endpoint_id = ?");
        values.push(endpoint.into());
    }
    if let Some(job) = filter.job_id {
        sql.push_str(" AND a.job_id = ?");
        values.push(job.into());
    }
    if let Some(account) = filter.account_id {
        sql.push_str(" AND a.job_id IN (SELECT id FROM jobs WHERE account_id = ?)");
        values.push(account.into());
    }
    if let Some(after) = filter.after {
        sql.push_str(" AND a.id > ?");
        values.push(after.into());
    }
    sql.push_str(" ORDER BY a.id LIMIT ?");
    values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    Attempt::find_by_statement(statement(db.get_database_backend(), &sql, values))
        .all(db)
        .await
}
