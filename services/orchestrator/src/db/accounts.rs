//! Accounts and the quota ledger. The balance is only ever changed together with a ledger entry in
//! the same transaction, so it always equals the ledger's sum; every entry has a unique key so the
//! same charge, refund or grant can never be booked twice.
//!
//! A job submitted alone is its own charge's entry: its row holds the cost, so submitting writes no
//! ledger row ([`charge_job`]), and the ledger as it is read ([`ledger_page`], [`ledger_sum`]) is the
//! `ledger` table together with those jobs' charges. When such a job is deleted, its charge is
//! written into the `ledger` table first ([`keep_charge`]), so the ledger never loses it.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait,
    QueryFilter, Set,
};

use super::entities::{account, job, ledger};
use super::statement;
use crate::domain::{now_ms, JobState};

/// The account of a tenant named by its external id.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    external_id: &str,
) -> Result<Option<account::Model>, DbErr> {
    account::Entity::find()
        .filter(account::Column::TenantId.eq(tenant_id))
        .filter(account::Column::ExternalId.eq(external_id))
        .one(db)
        .await
}

/// An account as a submit reads it before the charge.
#[derive(Clone, Debug)]
pub struct Standing {
    pub account: account::Model,
    /// Units of the active-jobs limit in use, as [`active_units`] counts them.
    pub active_units: u64,
    /// Tasks waiting in the queue: those ahead of a job submitted now.
    pub waiting_tasks: i64,
}

/// The account of a tenant named by its external id, with its active units as [`active_units`]
/// counts them and the tasks waiting in the queue, read in the same statement (one snapshot, so
/// `submits` and the count agree; see [`charge_job`]). The queue is counted here rather than with
/// the charge, so that the count never runs while the account's row is locked.
pub async fn find_with_active<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    external_id: &str,
) -> Result<Option<Standing>, DbErr> {
    use sea_orm::FromQueryResult;
    let row = db
        .query_one(statement(
            db.get_database_backend(),
            &format!(
                "SELECT a.*, ({}) AS active_units, ({}) AS waiting_tasks FROM accounts a \
                 WHERE a.tenant_id = ? AND a.external_id = ?",
                ACTIVE_UNITS.replace("account_id = ?", "account_id = a.id"),
                super::count_waiting(),
            ),
            vec![
                JobState::Queued.into(),
                JobState::Running.into(),
                tenant_id.into(),
                external_id.into(),
            ],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let active: i64 = row.try_get("", "active_units")?;
    Ok(Some(Standing {
        account: account::Model::from_query_result(&row, "")?,
        active_units: u64::try_from(active).unwrap_or_default(),
        waiting_tasks: row.try_get("", "waiting_tasks")?,
    }))
}

/// Locks the account row until the transaction ends, so that submits of one account run one after
/// another (active-job limit, idempotency). SQLite has a single writer, so it needs no lock.
pub async fn lock<C: ConnectionTrait>(db: &C, account_id: &str) -> Result<(), DbErr> {
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        db.execute(statement(
            db.get_database_backend(),
            "SELECT id FROM accounts WHERE id = ? FOR UPDATE",
            vec![account_id.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Creates the account if it does not exist yet.
pub async fn upsert<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    external_id: &str,
) -> Result<account::Model, DbErr> {
    if let Some(found) = find(db, tenant_id, external_id).await? {
        return Ok(found);
    }
    let inserted = account::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        tenant_id: Set(tenant_id.to_string()),
        external_id: Set(external_id.to_string()),
        balance: Set(0),
        member: Set(false),
        membership_expires_at: Set(None),
        created_at: Set(now_ms()),
        submits: Set(0),
    }
    .insert(db)
    .await;
    match inserted {
        Ok(model) => Ok(model),
        // Another call created it at the same moment.
        Err(e) if super::is_unique_violation(&e) => find(db, tenant_id, external_id)
            .await?
            .ok_or(DbErr::RecordNotFound("account".into())),
        Err(e) => Err(e),
    }
}

/// Sets or clears membership.
pub async fn set_membership<C: ConnectionTrait>(
    db: &C,
    account: account::Model,
    active: bool,
    expires_at: Option<i64>,
) -> Result<account::Model, DbErr> {
    let mut model: account::ActiveModel = account.into();
    model.member = Set(active);
    model.membership_expires_at = Set(expires_at);
    model.update(db).await
}

/// Whether the account may submit jobs now.
pub fn is_member(account: &account::Model, now: i64) -> bool {
    account.member && account.membership_expires_at.is_none_or(|t| t > now)
}

/// One booking on the ledger.
pub struct Entry<'a> {
    pub account_id: &'a str,
    pub kind: &'static str,
    pub amount: i64,
    pub reason: &'a str,
    pub unique_key: String,
    pub job_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
}

/// Books an entry and moves the balance, once per unique key. Returns false when the key was already
/// booked (nothing changes) or, for a debit, when the balance is too small (nothing changes either).
pub async fn book<C: ConnectionTrait>(db: &C, entry: Entry<'_>) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let inserted = db
        .execute(statement(
            backend,
            "INSERT INTO ledger (id, account_id, kind, amount, reason, unique_key, job_id, task_id, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (unique_key) DO NOTHING",
            vec![
                uuid::Uuid::now_v7().to_string().into(),
                entry.account_id.into(),
                entry.kind.into(),
                entry.amount.into(),
                entry.reason.into(),
                entry.unique_key.clone().into(),
                entry.job_id.map(str::to_string).into(),
                entry.task_id.map(str::to_string).into(),
                now_ms().into(),
            ],
        ))
        .await?;
    if inserted.rows_affected() == 0 {
        return Ok(false);
    }
    // The guard keeps the balance from going below zero even if two debits race; the CHECK
    // constraint of the table is the last line behind it.
    let moved = db
        .execute(statement(
            backend,
            "UPDATE accounts SET balance = balance + ? WHERE id = ? AND balance + ? >= 0",
            vec![
                entry.amount.into(),
                entry.account_id.into(),
                entry.amount.into(),
            ],
        ))
        .await?;
    if moved.rows_affected() == 0 {
        db.execute(statement(
            backend,
            "DELETE FROM ledger WHERE unique_key = ?",
            vec![entry.unique_key.into()],
        ))
        .await?;
        return Ok(false);
    }
    Ok(true)
}

/// Charges a job submitted alone: the balance moves in one guarded statement and the job's own row is
/// the ledger entry (see the module's documentation). `None` when the balance cannot pay it (nothing
/// changes); else the account's `submits` counting this job. The account's row stays locked until
/// the transaction ends, so call it last.
///
/// `submits` tells a submit how many jobs were charged since it read the account: every charge moves
/// it under the row's lock, and the statement returns the row as the lock left it, so the jobs added
/// since an earlier read of `submits` (with the active units in the same snapshot,
/// [`find_with_active`]) are at most the difference, less this job.
pub async fn charge_job<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    cost: i64,
) -> Result<Option<i64>, DbErr> {
    let row = db
        .query_one(statement(
            db.get_database_backend(),
            "UPDATE accounts SET balance = balance - ?, submits = submits + 1 \
             WHERE id = ? AND balance - ? >= 0 RETURNING submits",
            vec![cost.into(), account_id.into(), cost.into()],
        ))
        .await?;
    row.map(|r| r.try_get_by_index::<i64>(0)).transpose()
}

/// Counts `jobs` more jobs charged to the account (a batch's, charged entry by entry through
/// [`book`]), so a concurrent [`charge_job`] knows they were added.
pub async fn count_submits<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    jobs: usize,
) -> Result<(), DbErr> {
    db.execute(statement(
        db.get_database_backend(),
        "UPDATE accounts SET submits = submits + ? WHERE id = ?",
        vec![
            i64::try_from(jobs).unwrap_or(i64::MAX).into(),
            account_id.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// The kind, reason and key prefix of a job's charge as the ledger shows it.
pub const CHARGE_KIND: &str = "charge";
pub const CHARGE_REASON: &str = "job submitted";

/// The charges of jobs whose row is their ledger entry (no `charge:<job>` row in `ledger`), as
/// ledger rows, for one account: kind [`CHARGE_KIND`], reason [`CHARGE_REASON`].
fn job_charges() -> String {
    format!(
        "SELECT j.id, j.account_id, '{CHARGE_KIND}' AS kind, -j.cost AS amount, \
         '{CHARGE_REASON}' AS reason, 'charge:' || j.id AS unique_key, j.id AS job_id, \
         CAST(NULL AS TEXT) AS task_id, j.created_at FROM jobs j WHERE j.account_id = ? \
         AND NOT EXISTS (SELECT 1 FROM ledger l WHERE l.unique_key = 'charge:' || j.id)"
    )
}

/// Writes the charge of a job whose row is its ledger entry into the `ledger` table, before the job's
/// row is deleted. Nothing changes for a job whose charge is there already.
pub async fn keep_charge<C: ConnectionTrait>(db: &C, job_id: &str) -> Result<(), DbErr> {
    db.execute(statement(
        db.get_database_backend(),
        "INSERT INTO ledger (id, account_id, kind, amount, reason, unique_key, job_id, task_id, created_at) \
         SELECT id, account_id, ?, -cost, ?, 'charge:' || id, id, NULL, created_at FROM jobs WHERE id = ? \
         ON CONFLICT (unique_key) DO NOTHING",
        vec![CHARGE_KIND.into(), CHARGE_REASON.into(), job_id.into()],
    ))
    .await?;
    Ok(())
}

/// Refunds one task of a job, at most once, and counts it on the job.
pub async fn refund_task<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    task_id: &str,
    reason: &str,
) -> Result<bool, DbErr> {
    refund(
        db,
        job,
        task_id,
        job.unit_price,
        format!("refund:{task_id}"),
        reason,
    )
    .await
}

/// Refunds the failed units of a task that otherwise succeeded (a pose set's failed shots), at most
/// once. A task is either refunded whole or for its failed units, never both: a task that succeeded
/// cannot fail or be cancelled afterwards.
pub async fn refund_units<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    task_id: &str,
    amount: i64,
    reason: &str,
) -> Result<bool, DbErr> {
    refund(
        db,
        job,
        task_id,
        amount.clamp(0, job.unit_price),
        format!("refund-units:{task_id}"),
        reason,
    )
    .await
}

async fn refund<C: ConnectionTrait>(
    db: &C,
    job: &job::Model,
    task_id: &str,
    amount: i64,
    unique_key: String,
    reason: &str,
) -> Result<bool, DbErr> {
    if amount == 0 {
        return Ok(false);
    }
    let booked = book(
        db,
        Entry {
            account_id: &job.account_id,
            kind: "refund",
            amount,
            reason,
            unique_key,
            job_id: Some(&job.id),
            task_id: Some(task_id),
        },
    )
    .await?;
    if booked {
        db.execute(statement(
            db.get_database_backend(),
            "UPDATE jobs SET refunded = refunded + ? WHERE id = ?",
            vec![amount.into(), job.id.clone().into()],
        ))
        .await?;
    }
    Ok(booked)
}

/// Jobs of the account that are not terminal yet.
pub async fn active_jobs<C: ConnectionTrait>(db: &C, account_id: &str) -> Result<u64, DbErr> {
    job::Entity::find()
        .filter(job::Column::AccountId.eq(account_id))
        .filter(job::Column::State.is_in([JobState::Queued.as_str(), JobState::Running.as_str()]))
        .count(db)
        .await
}

/// Units of the account's active-jobs limit in use: queued or running jobs, the jobs of one batch
/// counting as one unit.
pub async fn active_units<C: ConnectionTrait>(db: &C, account_id: &str) -> Result<u64, DbErr> {
    let count = db
        .query_one(statement(
            db.get_database_backend(),
            ACTIVE_UNITS,
            vec![
                JobState::Queued.into(),
                JobState::Running.into(),
                account_id.into(),
            ],
        ))
        .await?
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or_default();
    Ok(u64::try_from(count).unwrap_or_default())
}

/// The count of [`active_units`]: a batch is one unit, every other job one.
const ACTIVE_UNITS: &str = "SELECT COUNT(DISTINCT COALESCE(batch_id, id)) FROM jobs \
     WHERE state IN (?, ?) AND account_id = ?";

/// A page of the account's ledger, newest first, after the entry `before` (exclusive).
pub async fn ledger_page<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    before: Option<&str>,
    limit: u64,
) -> Result<Vec<ledger::Model>, DbErr> {
    // Ids are UUIDv7, jobs' and entries' alike, so their order is their creation order.
    let (booked_before, charged_before) = if before.is_some() {
        (" AND id < ?", " AND j.id < ?")
    } else {
        ("", "")
    };
    let sql = format!(
        "SELECT * FROM (SELECT id, account_id, kind, amount, reason, unique_key, job_id, task_id, created_at \
         FROM ledger WHERE account_id = ?{booked_before} \
         UNION ALL {charges}{charged_before}) entries ORDER BY id DESC LIMIT ?",
        charges = job_charges()
    );
    let mut values: Vec<sea_orm::Value> = vec![account_id.into()];
    values.extend(before.map(|b| b.into()));
    values.push(account_id.into());
    values.extend(before.map(|b| b.into()));
    values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    ledger::Entity::find()
        .from_raw_sql(statement(db.get_database_backend(), &sql, values))
        .all(db)
        .await
}

/// The sum of the account's ledger, which must always equal its balance.
pub async fn ledger_sum<C: ConnectionTrait>(db: &C, account_id: &str) -> Result<i64, DbErr> {
    let sql = format!(
        "SELECT CAST(COALESCE(SUM(amount), 0) AS BIGINT) FROM (SELECT amount FROM ledger WHERE account_id = ? \
         UNION ALL SELECT amount FROM ({charges}) charges) entries",
        charges = job_charges()
    );
    let row = db
        .query_one(statement(
            db.get_database_backend(),
            &sql,
            vec![account_id.into(), account_id.into()],
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get_by_index::<i64>(0))
        .transpose()?
        .unwrap_or_default())
}
