//! The studio's rows (migration `m0006_studio`), every one belonging to one account (account ids are
//! unique across tenants, so filtering by account is filtering by tenant too).
//!
//! - A workspace is an e-commerce SKU (unique per account) in one of three workflow states: `pending`
//!   (being worked on), `approved` (every pair with a result is approved, and there is at least one)
//!   and `archived` (put away; its pairs are archived with it). Reviews and new pairs settle a
//!   workspace that is not archived into pending or approved ([`settle`]); archiving is allowed from
//!   approved only and activating from archived only, each one conditional `UPDATE` so that two
//!   calls racing cannot both pass. Changes of a workspace's pairs take the workspace's row lock
//!   first ([`lock`]), so concurrent reviews settle on what the others committed.
//! - A pair is a source (a URL, or an upload with its object key) and, once there is one, a result:
//!   the storage key a studio job wrote (with its job and task), or a URL given with the pair. Only a
//!   pair with a result can be approved.
//! - A prompt group is saved by name: the first save makes version 1, each later one the next version
//!   (one atomic upsert, so concurrent saves get distinct versions); every version's templates are kept.
//! - Preferences are one row per account, holding the active prompt group too: one active group per
//!   account by construction.
//! - A studio job's tasks are mapped to their pairs in `studio_job_tasks` (migration
//!   `m0007_studio_jobs`), written with the job ([`record_job_tasks`]); as a task succeeds, its first
//!   output becomes its pair's result in the same transaction ([`task_succeeded`]), the earlier
//!   result kept in the pair's metadata `history`.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Value};

use super::statement;
use crate::domain::{now_ms, Kind};

pub const PENDING: &str = "pending";
pub const APPROVED: &str = "approved";
pub const ARCHIVED: &str = "archived";

/// A workspace with the counts of its pairs.
#[derive(Clone, Debug, FromQueryResult)]
pub struct Workspace {
    pub id: String,
    pub tenant_id: String,
    pub account_id: String,
    pub sku: String,
    pub title: String,
    pub state: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub total: i64,
    pub with_result: i64,
    pub approved: i64,
}

/// An image pair.
#[derive(Clone, Debug, FromQueryResult)]
pub struct Pair {
    pub id: String,
    pub workspace_id: String,
    pub tenant_id: String,
    pub account_id: String,
    pub source_url: Option<String>,
    pub source_upload_id: Option<String>,
    pub source_key: Option<String>,
    pub result_key: Option<String>,
    pub result_url: Option<String>,
    pub approved: bool,
    pub archived: bool,
    pub metadata: String,
    pub job_id: Option<String>,
    pub task_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Pair {
    /// Whether the pair has a result (made by a studio job or given with it).
    pub fn has_result(&self) -> bool {
        self.result_key.is_some() || self.result_url.is_some()
    }
}

/// A pair to add: exactly one of `source_url` and `source_upload_id` (with its object key).
#[derive(Clone, Debug)]
pub struct NewPair {
    pub source_url: Option<String>,
    pub source_upload_id: Option<String>,
    pub source_key: Option<String>,
    pub result_url: Option<String>,
    pub metadata: String,
}

/// Which pairs a listing keeps; `None` keeps both values.
#[derive(Clone, Copy, Debug, Default)]
pub struct PairFilter {
    pub approved: Option<bool>,
    pub archived: Option<bool>,
    pub has_result: Option<bool>,
}

/// A prompt group at its latest version.
#[derive(Clone, Debug, FromQueryResult)]
pub struct Group {
    pub id: String,
    pub tenant_id: String,
    pub account_id: String,
    pub name: String,
    pub latest_version: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One template of one version of a group.
#[derive(Clone, Debug, FromQueryResult)]
pub struct Template {
    pub group_id: String,
    pub version: i32,
    pub position: i32,
    pub name: String,
    pub text: String,
    pub created_at: i64,
}

/// An account's preferences.
#[derive(Clone, Debug, FromQueryResult)]
pub struct Preferences {
    pub account_id: String,
    pub tenant_id: String,
    pub output_size: String,
    pub model: String,
    /// A JSON object of strings.
    pub settings: String,
    pub active_group_id: Option<String>,
    pub updated_at: i64,
}

const HAS_RESULT: &str = "(p.result_key IS NOT NULL OR p.result_url IS NOT NULL)";

fn workspace_select() -> String {
    format!(
        "SELECT w.id, w.tenant_id, w.account_id, w.sku, w.title, w.state, w.created_at, w.updated_at, \
         (SELECT COUNT(*) FROM studio_pairs p WHERE p.workspace_id = w.id) AS total, \
         (SELECT COUNT(*) FROM studio_pairs p WHERE p.workspace_id = w.id AND {HAS_RESULT}) AS with_result, \
         (SELECT COUNT(*) FROM studio_pairs p WHERE p.workspace_id = w.id AND p.approved) AS approved \
         FROM studio_workspaces w"
    )
}

const PAIR_COLUMNS: &str = "p.id, p.workspace_id, p.tenant_id, p.account_id, p.source_url, \
     p.source_upload_id, p.source_key, p.result_key, p.result_url, p.approved, p.archived, p.metadata, \
     p.job_id, p.task_id, p.created_at, p.updated_at";

/// Creates a pending workspace; a SKU the account already has fails with a unique violation.
pub async fn create_workspace<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    account_id: &str,
    sku: &str,
    title: &str,
) -> Result<Workspace, DbErr> {
    let id = format!("ws_{}", uuid::Uuid::now_v7().simple());
    let now = now_ms();
    db.execute(statement(
        db.get_database_backend(),
        "INSERT INTO studio_workspaces (id, tenant_id, account_id, sku, title, state, created_at, updated_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        vec![
            id.clone().into(),
            tenant_id.into(),
            account_id.into(),
            sku.into(),
            title.into(),
            PENDING.into(),
            now.into(),
            now.into(),
        ],
    ))
    .await?;
    workspace(db, account_id, &id)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("workspace just created".into()))
}

/// The account's workspace with this id.
pub async fn workspace<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    id: &str,
) -> Result<Option<Workspace>, DbErr> {
    Workspace::find_by_statement(statement(
        db.get_database_backend(),
        &format!("{} WHERE w.account_id = ? AND w.id = ?", workspace_select()),
        vec![account_id.into(), id.into()],
    ))
    .one(db)
    .await
}

/// The account's workspace for this SKU.
pub async fn workspace_by_sku<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    sku: &str,
) -> Result<Option<Workspace>, DbErr> {
    Workspace::find_by_statement(statement(
        db.get_database_backend(),
        &format!(
            "{} WHERE w.account_id = ? AND w.sku = ?",
            workspace_select()
        ),
        vec![account_id.into(), sku.into()],
    ))
    .one(db)
    .await
}

/// A page of the account's workspaces, newest first, older than the workspace `before`.
pub async fn workspaces<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    state: Option<&str>,
    before: Option<&str>,
    limit: u64,
) -> Result<Vec<Workspace>, DbErr> {
    let mut sql = format!("{} WHERE w.account_id = ?", workspace_select());
    let mut values: Vec<Value> = vec![account_id.into()];
    if let Some(state) = state {
        sql.push_str(" AND w.state = ?");
        values.push(state.into());
    }
    if let Some(before) = before {
        sql.push_str(" AND w.id < ?");
        values.push(before.into());
    }
    sql.push_str(" ORDER BY w.id DESC LIMIT ?");
    values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    Workspace::find_by_statement(statement(db.get_database_backend(), &sql, values))
        .all(db)
        .await
}

/// Locks a workspace's row until the transaction ends (PostgreSQL; SQLite has one writer anyway).
/// Every change of a workspace's pairs takes it first, so that [`settle`] sees the other changes
/// committed and a review cannot cross an archive.
pub async fn lock<C: ConnectionTrait>(db: &C, id: &str) -> Result<(), DbErr> {
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        db.execute(statement(
            db.get_database_backend(),
            "SELECT id FROM studio_workspaces WHERE id = ? FOR UPDATE",
            vec![id.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Moves a workspace from `from` to `to`; false if it was not in `from`.
pub async fn transition<C: ConnectionTrait>(
    db: &C,
    id: &str,
    from: &str,
    to: &str,
) -> Result<bool, DbErr> {
    let done = db
        .execute(statement(
            db.get_database_backend(),
            "UPDATE studio_workspaces SET state = ?, updated_at = ? WHERE id = ? AND state = ?",
            vec![to.into(), now_ms().into(), id.into(), from.into()],
        ))
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Puts a workspace that is not archived in the state its pairs call for: approved when it has
/// results and every one is approved, else pending.
pub async fn settle<C: ConnectionTrait>(db: &C, id: &str) -> Result<(), DbErr> {
    db.execute(statement(
        db.get_database_backend(),
        &format!(
            "UPDATE studio_workspaces SET state = CASE \
             WHEN EXISTS (SELECT 1 FROM studio_pairs p WHERE p.workspace_id = ? AND {HAS_RESULT}) \
              AND NOT EXISTS (SELECT 1 FROM studio_pairs p WHERE p.workspace_id = ? AND {HAS_RESULT} AND NOT p.approved) \
             THEN ? ELSE ? END, updated_at = ? \
             WHERE id = ? AND state <> ?"
        ),
        vec![
            id.into(),
            id.into(),
            APPROVED.into(),
            PENDING.into(),
            now_ms().into(),
            id.into(),
            ARCHIVED.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Archives or brings back every pair of a workspace.
pub async fn archive_pairs<C: ConnectionTrait>(
    db: &C,
    workspace_id: &str,
    archived: bool,
) -> Result<(), DbErr> {
    db.execute(statement(
        db.get_database_backend(),
        "UPDATE studio_pairs SET archived = ?, updated_at = ? WHERE workspace_id = ?",
        vec![archived.into(), now_ms().into(), workspace_id.into()],
    ))
    .await?;
    Ok(())
}

/// Adds pairs to a workspace, in the given order (ids grow in that order).
pub async fn insert_pairs<C: ConnectionTrait>(
    db: &C,
    workspace: &Workspace,
    pairs: &[NewPair],
) -> Result<Vec<String>, DbErr> {
    let now = now_ms();
    let archived = workspace.state == ARCHIVED;
    let mut ids = Vec::with_capacity(pairs.len());
    for p in pairs {
        let id = format!("pair_{}", uuid::Uuid::now_v7().simple());
        db.execute(statement(
            db.get_database_backend(),
            "INSERT INTO studio_pairs (id, workspace_id, tenant_id, account_id, source_url, \
             source_upload_id, source_key, result_key, result_url, approved, archived, metadata, \
             job_id, task_id, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, NULL, NULL, ?, ?)",
            vec![
                id.clone().into(),
                workspace.id.clone().into(),
                workspace.tenant_id.clone().into(),
                workspace.account_id.clone().into(),
                p.source_url.clone().into(),
                p.source_upload_id.clone().into(),
                p.source_key.clone().into(),
                p.result_url.clone().into(),
                false.into(),
                archived.into(),
                p.metadata.clone().into(),
                now.into(),
                now.into(),
            ],
        ))
        .await?;
        ids.push(id);
    }
    Ok(ids)
}

/// A page of a workspace's pairs, oldest first, after the pair `after`.
pub async fn pairs<C: ConnectionTrait>(
    db: &C,
    workspace_id: &str,
    filter: PairFilter,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<Pair>, DbErr> {
    let mut sql = format!("SELECT {PAIR_COLUMNS} FROM studio_pairs p WHERE p.workspace_id = ?");
    let mut values: Vec<Value> = vec![workspace_id.into()];
    if let Some(approved) = filter.approved {
        sql.push_str(" AND p.approved = ?");
        values.push(approved.into());
    }
    if let Some(archived) = filter.archived {
        sql.push_str(" AND p.archived = ?");
        values.push(archived.into());
    }
    match filter.has_result {
        Some(true) => sql.push_str(&format!(" AND {HAS_RESULT}")),
        Some(false) => sql.push_str(&format!(" AND NOT {HAS_RESULT}")),
        None => {}
    }
    if let Some(after) = after {
        sql.push_str(" AND p.id > ?");
        values.push(after.into());
    }
    sql.push_str(" ORDER BY p.id LIMIT ?");
    values.push(i64::try_from(limit).unwrap_or(i64::MAX).into());
    Pair::find_by_statement(statement(db.get_database_backend(), &sql, values))
        .all(db)
        .await
}

/// The pairs of a workspace with these ids (the others are simply absent), oldest first.
pub async fn pairs_by_id<C: ConnectionTrait>(
    db: &C,
    workspace_id: &str,
    ids: &[String],
) -> Result<Vec<Pair>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let mut values: Vec<Value> = vec![workspace_id.into()];
    values.extend(ids.iter().map(|id| Value::from(id.clone())));
    Pair::find_by_statement(statement(
        db.get_database_backend(),
        &format!(
            "SELECT {PAIR_COLUMNS} FROM studio_pairs p WHERE p.workspace_id = ? AND p.id IN ({marks}) ORDER BY p.id"
        ),
        values,
    ))
    .all(db)
    .await
}

/// Approves or un-approves these pairs of a workspace.
pub async fn set_approved<C: ConnectionTrait>(
    db: &C,
    workspace_id: &str,
    ids: &[String],
    approved: bool,
) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let mut values: Vec<Value> = vec![approved.into(), now_ms().into(), workspace_id.into()];
    values.extend(ids.iter().map(|id| Value::from(id.clone())));
    db.execute(statement(
        db.get_database_backend(),
        &format!(
            "UPDATE studio_pairs SET approved = ?, updated_at = ? WHERE workspace_id = ? AND id IN ({marks})"
        ),
        values,
    ))
    .await?;
    Ok(())
}

const GROUP_COLUMNS: &str =
    "id, tenant_id, account_id, name, latest_version, created_at, updated_at";

/// Saves a group's templates as its next version (version 1 for a new name); returns the group.
pub async fn save_group<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    account_id: &str,
    name: &str,
    templates: &[(String, String)],
) -> Result<Group, DbErr> {
    let now = now_ms();
    let group = Group::find_by_statement(statement(
        db.get_database_backend(),
        &format!(
            "INSERT INTO studio_prompt_groups ({GROUP_COLUMNS}) VALUES (?, ?, ?, ?, 1, ?, ?) \
             ON CONFLICT (account_id, name) DO UPDATE SET \
             latest_version = studio_prompt_groups.latest_version + 1, updated_at = excluded.updated_at \
             RETURNING {GROUP_COLUMNS}"
        ),
        vec![
            format!("pg_{}", uuid::Uuid::now_v7().simple()).into(),
            tenant_id.into(),
            account_id.into(),
            name.into(),
            now.into(),
            now.into(),
        ],
    ))
    .one(db)
    .await?
    .ok_or_else(|| DbErr::RecordNotFound("prompt group just saved".into()))?;
    for (position, (template_name, text)) in templates.iter().enumerate() {
        db.execute(statement(
            db.get_database_backend(),
            "INSERT INTO studio_prompt_templates (group_id, version, position, name, text, created_at) \
             VALUES (?, ?, ?, ?, ?, ?)",
            vec![
                group.id.clone().into(),
                group.latest_version.into(),
                i32::try_from(position).unwrap_or(i32::MAX).into(),
                template_name.clone().into(),
                text.clone().into(),
                now.into(),
            ],
        ))
        .await?;
    }
    Ok(group)
}

/// The account's group with this id.
pub async fn group<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    id: &str,
) -> Result<Option<Group>, DbErr> {
    Group::find_by_statement(statement(
        db.get_database_backend(),
        &format!(
            "SELECT {GROUP_COLUMNS} FROM studio_prompt_groups WHERE account_id = ? AND id = ?"
        ),
        vec![account_id.into(), id.into()],
    ))
    .one(db)
    .await
}

/// The account's groups, by name.
pub async fn groups<C: ConnectionTrait>(db: &C, account_id: &str) -> Result<Vec<Group>, DbErr> {
    Group::find_by_statement(statement(
        db.get_database_backend(),
        &format!(
            "SELECT {GROUP_COLUMNS} FROM studio_prompt_groups WHERE account_id = ? ORDER BY name, id"
        ),
        vec![account_id.into()],
    ))
    .all(db)
    .await
}

/// The templates of one version of a group, in order.
pub async fn templates<C: ConnectionTrait>(
    db: &C,
    group_id: &str,
    version: i32,
) -> Result<Vec<Template>, DbErr> {
    Template::find_by_statement(statement(
        db.get_database_backend(),
        "SELECT group_id, version, position, name, text, created_at FROM studio_prompt_templates \
         WHERE group_id = ? AND version = ? ORDER BY position",
        vec![group_id.into(), version.into()],
    ))
    .all(db)
    .await
}

/// The templates of the latest version of every group of the account, by group and position.
pub async fn latest_templates<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
) -> Result<Vec<Template>, DbErr> {
    Template::find_by_statement(statement(
        db.get_database_backend(),
        "SELECT t.group_id, t.version, t.position, t.name, t.text, t.created_at \
         FROM studio_prompt_templates t JOIN studio_prompt_groups g \
         ON g.id = t.group_id AND g.latest_version = t.version \
         WHERE g.account_id = ? ORDER BY t.group_id, t.position",
        vec![account_id.into()],
    ))
    .all(db)
    .await
}

const PREFERENCE_COLUMNS: &str =
    "account_id, tenant_id, output_size, model, settings, active_group_id, updated_at";

/// The account's preferences, if it ever set any or chose an active group.
pub async fn preferences<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
) -> Result<Option<Preferences>, DbErr> {
    Preferences::find_by_statement(statement(
        db.get_database_backend(),
        &format!("SELECT {PREFERENCE_COLUMNS} FROM studio_preferences WHERE account_id = ?"),
        vec![account_id.into()],
    ))
    .one(db)
    .await
}

/// Replaces output size, model and settings (JSON text), keeping the active group.
pub async fn set_preferences<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    account_id: &str,
    output_size: &str,
    model: &str,
    settings: &str,
) -> Result<(), DbErr> {
    db.execute(statement(
        db.get_database_backend(),
        &format!(
            "INSERT INTO studio_preferences ({PREFERENCE_COLUMNS}) VALUES (?, ?, ?, ?, ?, NULL, ?) \
             ON CONFLICT (account_id) DO UPDATE SET output_size = excluded.output_size, \
             model = excluded.model, settings = excluded.settings, updated_at = excluded.updated_at"
        ),
        vec![
            account_id.into(),
            tenant_id.into(),
            output_size.into(),
            model.into(),
            settings.into(),
            now_ms().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Makes a group the account's active one, keeping the other preferences.
pub async fn set_active_group<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    account_id: &str,
    group_id: &str,
) -> Result<(), DbErr> {
    db.execute(statement(
        db.get_database_backend(),
        &format!(
            "INSERT INTO studio_preferences ({PREFERENCE_COLUMNS}) VALUES (?, ?, '', '', '{{}}', ?, ?) \
             ON CONFLICT (account_id) DO UPDATE SET active_group_id = excluded.active_group_id, \
             updated_at = excluded.updated_at"
        ),
        vec![
            account_id.into(),
            tenant_id.into(),
            group_id.into(),
            now_ms().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Whether a stored object is still named by a job other than `except_job` (its writer or a cache hit)
/// or by a pair of the account's studio outside `except_pairs` (as its uploaded source or its result).
pub async fn object_named_elsewhere<C: ConnectionTrait>(
    db: &C,
    key: &str,
    except_job: Option<&str>,
    except_pairs: &[String],
) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    if super::retention::named_by_other_job(db, key, except_job.unwrap_or("")).await? {
        return Ok(true);
    }
    let mut sql =
        String::from("SELECT 1 FROM studio_pairs p WHERE (p.source_key = ? OR p.result_key = ?)");
    let mut values: Vec<Value> = vec![key.into(), key.into()];
    if !except_pairs.is_empty() {
        let marks = vec!["?"; except_pairs.len()].join(", ");
        sql.push_str(&format!(" AND p.id NOT IN ({marks})"));
        values.extend(except_pairs.iter().map(|id| Value::from(id.clone())));
    }
    sql.push_str(" LIMIT 1");
    Ok(db
        .query_one(statement(backend, &sql, values))
        .await?
        .is_some())
}

/// Drops the reference of `job_id` to an object, so that the outbox may remove it.
pub async fn drop_object_ref<C: ConnectionTrait>(
    db: &C,
    key: &str,
    job_id: &str,
) -> Result<(), DbErr> {
    db.execute(statement(
        db.get_database_backend(),
        "DELETE FROM object_refs WHERE object_key = ? AND job_id = ?",
        vec![key.into(), job_id.into()],
    ))
    .await?;
    Ok(())
}

/// Clears the uploaded source (`sources`) and the result with its job, task and approval (`results`)
/// of these pairs of a workspace.
pub async fn clear_files<C: ConnectionTrait>(
    db: &C,
    workspace_id: &str,
    ids: &[String],
    sources: bool,
    results: bool,
) -> Result<(), DbErr> {
    let mut sets = Vec::new();
    if sources {
        sets.push("source_upload_id = NULL, source_key = NULL");
    }
    if results {
        sets.push(
            "result_key = NULL, result_url = NULL, job_id = NULL, task_id = NULL, approved = ?",
        );
    }
    if ids.is_empty() || sets.is_empty() {
        return Ok(());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let mut values: Vec<Value> = Vec::new();
    if results {
        values.push(false.into());
    }
    values.push(now_ms().into());
    values.push(workspace_id.into());
    values.extend(ids.iter().map(|id| Value::from(id.clone())));
    db.execute(statement(
        db.get_database_backend(),
        &format!(
            "UPDATE studio_pairs SET {}, updated_at = ? WHERE workspace_id = ? AND id IN ({marks})",
            sets.join(", ")
        ),
        values,
    ))
    .await?;
    Ok(())
}

/// Removes these pairs of a workspace.
pub async fn remove_pairs<C: ConnectionTrait>(
    db: &C,
    workspace_id: &str,
    ids: &[String],
) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    let marks = vec!["?"; ids.len()].join(", ");
    let mut values: Vec<Value> = vec![workspace_id.into()];
    values.extend(ids.iter().map(|id| Value::from(id.clone())));
    db.execute(statement(
        db.get_database_backend(),
        &format!("DELETE FROM studio_pairs WHERE workspace_id = ? AND id IN ({marks})"),
        values,
    ))
    .await?;
    Ok(())
}

/// Records which pair each task of a studio job works on (migration `m0007_studio_jobs`), in the
/// transaction that inserts the job.
pub async fn record_job_tasks<C: ConnectionTrait>(
    db: &C,
    job_id: &str,
    tasks: &[(String, String)],
) -> Result<(), DbErr> {
    let now = now_ms();
    for (task_id, pair_id) in tasks {
        db.execute(statement(
            db.get_database_backend(),
            "INSERT INTO studio_job_tasks (task_id, job_id, pair_id, created_at) VALUES (?, ?, ?, ?)",
            vec![
                task_id.clone().into(),
                job_id.into(),
                pair_id.clone().into(),
                now.into(),
            ],
        ))
        .await?;
    }
    Ok(())
}

/// The pairs a studio job works on, in the order of its tasks (empty for any other job).
pub async fn job_pairs<C: ConnectionTrait>(db: &C, job_id: &str) -> Result<Vec<String>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        pair_id: String,
    }
    Ok(Row::find_by_statement(statement(
        db.get_database_backend(),
        "SELECT s.pair_id FROM studio_job_tasks s JOIN tasks t ON t.id = s.task_id \
         WHERE s.job_id = ? ORDER BY t.idx",
        vec![job_id.into()],
    ))
    .all(db)
    .await?
    .into_iter()
    .map(|r| r.pair_id)
    .collect())
}

/// Whether a job of this kind can be a studio job: the studio submits edit jobs only
/// (`api/studio.rs`), so another kind's task has no pair, and its success need not look for one.
pub fn may_be_studio(kind: Kind) -> bool {
    kind == Kind::Edit
}

/// Called in the transaction that records a task's success: when the task belongs to a studio job,
/// its first output becomes its pair's result (with the job and task that made it, not approved),
/// the pair's earlier result moving into its metadata's `history`, and the workspace settles. A
/// pair removed in the meantime is left alone; a workspace archived in the meantime gets the result
/// but stays archived. False when the task is not a studio job's or there is no output.
pub async fn task_succeeded<C: ConnectionTrait>(
    db: &C,
    job_id: &str,
    job_kind: Kind,
    task_id: &str,
    first_output_key: Option<&str>,
) -> Result<bool, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        pair_id: String,
        workspace_id: String,
    }
    let Some(key) = first_output_key.filter(|k| !k.is_empty() && may_be_studio(job_kind)) else {
        return Ok(false);
    };
    let Some(row) = Row::find_by_statement(statement(
        db.get_database_backend(),
        "SELECT s.pair_id, p.workspace_id FROM studio_job_tasks s \
         JOIN studio_pairs p ON p.id = s.pair_id WHERE s.task_id = ?",
        vec![task_id.into()],
    ))
    .one(db)
    .await?
    else {
        return Ok(false);
    };
    lock(db, &row.workspace_id).await?;
    let Some(pair) = pairs_by_id(db, &row.workspace_id, std::slice::from_ref(&row.pair_id))
        .await?
        .into_iter()
        .next()
    else {
        return Ok(false);
    };
    let metadata = with_history(&pair);
    db.execute(statement(
        db.get_database_backend(),
        "UPDATE studio_pairs SET result_key = ?, result_url = NULL, job_id = ?, task_id = ?, \
         approved = ?, metadata = ?, updated_at = ? WHERE id = ?",
        vec![
            key.into(),
            job_id.into(),
            task_id.into(),
            false.into(),
            metadata.into(),
            now_ms().into(),
            pair.id.clone().into(),
        ],
    ))
    .await?;
    settle(db, &row.workspace_id).await?;
    Ok(true)
}

/// The pair's metadata with its current result (if any) appended to its `history` array: result key
/// or URL, the job and task that made it, whether it was approved, and when it was replaced.
/// Metadata that is not a JSON object (it always is, as AddPairs checks it) is kept under `metadata`.
fn with_history(pair: &Pair) -> String {
    let mut object = match serde_json::from_str::<serde_json::Value>(&pair.metadata) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(other) => {
            let mut map = serde_json::Map::new();
            map.insert("metadata".into(), other);
            map
        }
        Err(_) => {
            let mut map = serde_json::Map::new();
            map.insert("metadata".into(), pair.metadata.clone().into());
            map
        }
    };
    if pair.has_result() {
        let entry = serde_json::json!({
            "result_key": pair.result_key,
            "result_url": pair.result_url,
            "job_id": pair.job_id,
            "task_id": pair.task_id,
            "approved": pair.approved,
            "replaced_at": now_ms(),
        });
        match object.get_mut("history") {
            Some(serde_json::Value::Array(list)) => list.push(entry),
            _ => {
                object.insert("history".into(), serde_json::Value::Array(vec![entry]));
            }
        }
    }
    serde_json::Value::Object(object).to_string()
}
