//! Rows of deletion and retention: which jobs name which stored objects, the outbox of objects to
//! remove from storage, and what the retention settings make due.

use atelier_proto::v1 as pb;
use sea_orm::{ConnectionTrait, DbErr};

use super::statement;
use crate::domain::{now_ms, JobState};

/// Job states after which nothing changes any more, as an SQL list of their stored words.
fn terminal_states() -> String {
    format!("({})", super::state_words(&JobState::TERMINAL))
}

const DAY_MS: i64 = 86_400_000;

/// The job whose attempt wrote an object: its key is `t/<tenant>/jobs/<job>/…` (outputs, thumbnails
/// and imported results alike); `None` for any other key (uploads, cache manifests).
pub fn owner_job(key: &str) -> Option<&str> {
    let rest = key.strip_prefix("t/")?;
    let (_tenant, rest) = rest.split_once('/')?;
    let rest = rest.strip_prefix("jobs/")?;
    let (job, _) = rest.split_once('/')?;
    (!job.is_empty()).then_some(job)
}

/// The objects (outputs and thumbnails) of `outputs`.
fn object_keys(outputs: &[pb::Output]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for o in outputs {
        keys.push(o.key.clone());
        if let Some(t) = &o.thumbnail {
            keys.push(t.key.clone());
        }
    }
    keys.retain(|k| !k.is_empty());
    keys
}

/// Records the objects (outputs and thumbnails) the job names that another job wrote (a cache hit's).
/// The job's own objects need no row: their keys name the job, and the job's tasks list them.
pub async fn record_refs<C: ConnectionTrait>(
    db: &C,
    job_id: &str,
    tenant_id: &str,
    outputs: &[pb::Output],
) -> Result<(), DbErr> {
    for key in object_keys(outputs) {
        if owner_job(&key) == Some(job_id) {
            continue;
        }
        db.execute(statement(
            db.get_database_backend(),
            "INSERT INTO object_refs (object_key, job_id, tenant_id) VALUES (?, ?, ?) \
             ON CONFLICT (object_key, job_id) DO NOTHING",
            vec![key.into(), job_id.into(), tenant_id.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Whether a job other than `except_job` names the object: through a reference (a cache hit), or as
/// its writer, while that job exists.
pub async fn named_by_other_job<C: ConnectionTrait>(
    db: &C,
    key: &str,
    except_job: &str,
) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let referenced = db
        .query_one(statement(
            backend,
            "SELECT 1 FROM object_refs WHERE object_key = ? AND job_id <> ? LIMIT 1",
            vec![key.into(), except_job.into()],
        ))
        .await?
        .is_some();
    if referenced {
        return Ok(true);
    }
    let Some(owner) = owner_job(key).filter(|owner| *owner != except_job) else {
        return Ok(false);
    };
    Ok(db
        .query_one(statement(
            backend,
            "SELECT 1 FROM jobs WHERE id = ?",
            vec![owner.into()],
        ))
        .await?
        .is_some())
}

/// What removing a job's rows left to do in storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    /// Objects queued for removal: no other job names them.
    pub queued: Vec<String>,
    /// Objects kept: another job (through the content cache) still names them.
    pub kept: u32,
}

/// Removes a job's rows (events, tasks, object references, the job) and queues the objects no other
/// job names for removal. Call inside a transaction; the ledger keeps its rows.
pub async fn purge_job<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    job_id: &str,
) -> Result<Purged, DbErr> {
    let backend = db.get_database_backend();
    // The job's objects: what its tasks wrote or reused, and the references of older rows.
    let mut keys: Vec<String> = Vec::new();
    for task in super::jobs::tasks_of(db, &[job_id.to_string()]).await? {
        keys.extend(object_keys(
            &task
                .outputs
                .as_deref()
                .map(super::stored_outputs)
                .unwrap_or_default(),
        ));
    }
    for row in db
        .query_all(statement(
            backend,
            "SELECT object_key FROM object_refs WHERE job_id = ?",
            vec![job_id.into()],
        ))
        .await?
    {
        keys.push(row.try_get_by_index(0)?);
    }
    keys.sort();
    keys.dedup();
    let mut purged = Purged::default();
    for key in keys {
        if named_by_other_job(db, &key, job_id).await? {
            purged.kept += 1;
            continue;
        }
        db.execute(statement(
            backend,
            "INSERT INTO object_deletions (object_key, tenant_id, created_at) VALUES (?, ?, ?) \
             ON CONFLICT (object_key) DO NOTHING",
            vec![key.clone().into(), tenant_id.into(), now_ms().into()],
        ))
        .await?;
        purged.queued.push(key);
    }
    // The job's row may be its charge's ledger entry: the ledger keeps the charge.
    super::accounts::keep_charge(db, job_id).await?;
    for sql in [
        "DELETE FROM object_refs WHERE job_id = ?",
        "DELETE FROM job_events WHERE job_id = ?",
        "DELETE FROM tasks WHERE job_id = ?",
        "DELETE FROM jobs WHERE id = ?",
    ] {
        db.execute(statement(backend, sql, vec![job_id.into()]))
            .await?;
    }
    Ok(purged)
}

/// Queues one object for removal from storage.
pub async fn queue_object<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    object_key: &str,
) -> Result<(), DbErr> {
    db.execute(statement(
        db.get_database_backend(),
        "INSERT INTO object_deletions (object_key, tenant_id, created_at) VALUES (?, ?, ?) \
         ON CONFLICT (object_key) DO NOTHING",
        vec![object_key.into(), tenant_id.into(), now_ms().into()],
    ))
    .await?;
    Ok(())
}

/// Removes an upload's row and queues its object for removal.
pub async fn purge_upload<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    upload_id: &str,
    object_key: &str,
) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    db.execute(statement(
        backend,
        "INSERT INTO object_deletions (object_key, tenant_id, created_at) VALUES (?, ?, ?) \
         ON CONFLICT (object_key) DO NOTHING",
        vec![object_key.into(), tenant_id.into(), now_ms().into()],
    ))
    .await?;
    db.execute(statement(
        backend,
        "DELETE FROM uploads WHERE id = ?",
        vec![upload_id.into()],
    ))
    .await?;
    Ok(())
}

/// Up to `limit` objects waiting for removal, oldest first. Objects a job has come to name again
/// since they were queued (a cache hit in between) are dropped from the outbox, not returned.
pub async fn pending_deletions<C: ConnectionTrait>(
    db: &C,
    limit: u64,
) -> Result<Vec<String>, DbErr> {
    let backend = db.get_database_backend();
    db.execute(statement(
        backend,
        "DELETE FROM object_deletions WHERE object_key IN (SELECT object_key FROM object_refs)",
        Vec::new(),
    ))
    .await?;
    let rows = db
        .query_all(statement(
            backend,
            "SELECT object_key FROM object_deletions ORDER BY created_at, object_key LIMIT ?",
            vec![i64::try_from(limit).unwrap_or(i64::MAX).into()],
        ))
        .await?;
    rows.iter().map(|r| r.try_get_by_index(0)).collect()
}

/// Marks an object removed from storage.
pub async fn deletion_done<C: ConnectionTrait>(db: &C, key: &str) -> Result<(), DbErr> {
    db.execute(statement(
        db.get_database_backend(),
        "DELETE FROM object_deletions WHERE object_key = ?",
        vec![key.into()],
    ))
    .await?;
    Ok(())
}

/// Retention defaults, in days, for tenants that set none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Defaults {
    pub output_days: u32,
    pub upload_days: u32,
    pub event_days: u32,
}

/// The newest time anything can be due under the retention setting `column`: `now` (the first
/// parameter) less the shortest retention any tenant keeps, the default (the second) for those that
/// set none. Bounding a sweep's scan of the time index by it keeps the sweep as cheap as what is
/// due: without it the scan cannot stop before the end, and every sweep reads the whole history.
fn newest_due(column: &str) -> String {
    format!("(SELECT ? - MIN(COALESCE(b.{column}, ?)) * {DAY_MS} FROM tenants b)")
}

/// Up to `limit` terminal jobs (tenant id, job id) that finished longer ago than their tenant's
/// output retention.
pub async fn due_jobs<C: ConnectionTrait>(
    db: &C,
    defaults: Defaults,
    now: i64,
    limit: u64,
) -> Result<Vec<(String, String)>, DbErr> {
    let terminal = terminal_states();
    let rows = db
        .query_all(statement(
            db.get_database_backend(),
            &format!(
                "SELECT j.tenant_id, j.id FROM jobs j JOIN tenants t ON t.id = j.tenant_id \
                 WHERE j.state IN {terminal} AND j.finished_at < {} \
                 AND j.finished_at < ? - COALESCE(t.retention_output_days, ?) * {DAY_MS} \
                 ORDER BY j.finished_at, j.id LIMIT ?",
                newest_due("retention_output_days")
            ),
            vec![
                now.into(),
                i64::from(defaults.output_days).into(),
                now.into(),
                i64::from(defaults.output_days).into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get_by_index(0)?, r.try_get_by_index(1)?)))
        .collect()
}

/// Up to `limit` uploads (tenant id, upload id, object key) older than their tenant's retention.
pub async fn due_uploads<C: ConnectionTrait>(
    db: &C,
    defaults: Defaults,
    now: i64,
    limit: u64,
) -> Result<Vec<(String, String, String)>, DbErr> {
    let rows = db
        .query_all(statement(
            db.get_database_backend(),
            &format!(
                "SELECT u.tenant_id, u.id, u.object_key FROM uploads u JOIN tenants t ON t.id = u.tenant_id \
                 WHERE u.created_at < ? - COALESCE(t.retention_upload_days, ?) * {DAY_MS} \
                 ORDER BY u.created_at, u.id LIMIT ?"
            ),
            vec![
                now.into(),
                i64::from(defaults.upload_days).into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get_by_index(0)?,
                r.try_get_by_index(1)?,
                r.try_get_by_index(2)?,
            ))
        })
        .collect()
}

/// Removes up to `limit` events of terminal jobs older than their tenant's event retention; returns
/// how many.
pub async fn expire_events<C: ConnectionTrait>(
    db: &C,
    defaults: Defaults,
    now: i64,
    limit: u64,
) -> Result<u64, DbErr> {
    let terminal = terminal_states();
    let done = db
        .execute(statement(
            db.get_database_backend(),
            &format!(
                "DELETE FROM job_events WHERE id IN (SELECT e.id FROM job_events e \
                 JOIN jobs j ON j.id = e.job_id JOIN tenants t ON t.id = j.tenant_id \
                 WHERE j.state IN {terminal} AND e.created_at < {} \
                 AND e.created_at < ? - COALESCE(t.retention_event_days, ?) * {DAY_MS} \
                 ORDER BY e.created_at, e.id LIMIT ?)",
                newest_due("retention_event_days")
            ),
            vec![
                now.into(),
                i64::from(defaults.event_days).into(),
                now.into(),
                i64::from(defaults.event_days).into(),
                i64::try_from(limit).unwrap_or(i64::MAX).into(),
            ],
        ))
        .await?;
    Ok(done.rows_affected())
}

/// A tenant's retention in days; 0 where the tenant keeps the default.
pub async fn tenant_retention<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
) -> Result<Option<[u32; 3]>, DbErr> {
    let row = db
        .query_one(statement(
            db.get_database_backend(),
            "SELECT retention_output_days, retention_upload_days, retention_event_days FROM tenants WHERE id = ?",
            vec![tenant_id.into()],
        ))
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let day = |i| -> Result<u32, DbErr> {
        let v: Option<i32> = row.try_get_by_index(i)?;
        Ok(v.and_then(|d| u32::try_from(d).ok()).unwrap_or(0))
    };
    Ok(Some([day(0)?, day(1)?, day(2)?]))
}

/// Sets a tenant's retention; 0 returns a setting to the default. False when there is no such tenant.
pub async fn set_tenant_retention<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    days: [u32; 3],
) -> Result<bool, DbErr> {
    let value = |d: u32| -> sea_orm::Value {
        if d == 0 {
            Option::<i32>::None.into()
        } else {
            Some(i32::try_from(d).unwrap_or(i32::MAX)).into()
        }
    };
    let done = db
        .execute(statement(
            db.get_database_backend(),
            "UPDATE tenants SET retention_output_days = ?, retention_upload_days = ?, retention_event_days = ? WHERE id = ?",
            vec![value(days[0]), value(days[1]), value(days[2]), tenant_id.into()],
        ))
        .await?;
    Ok(done.rows_affected() > 0)
}
