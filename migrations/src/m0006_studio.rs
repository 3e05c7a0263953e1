//! The studio (seed 003's ImageStudio), every row scoped to a tenant and an account:
//!
//! - `studio_workspaces`: one per SKU (`sku` unique per account) with its workflow state
//!   (`pending`, `approved`, `archived`);
//! - `studio_pairs`: a workspace's image pairs: the source (a URL, or an upload with its object key),
//!   the result (a storage key a studio job wrote, or a URL given with the pair), `approved`,
//!   `archived`, metadata as JSON text, and the job and task that produced the result;
//! - `studio_prompt_groups` and `studio_prompt_templates`: named groups of templates; saving a group
//!   adds a version (its templates keyed by group, version and position), earlier versions stay;
//! - `studio_preferences`: one row per account: output size, model, other settings as JSON text, and
//!   the active prompt group (one per account by construction).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0006_studio"
    }
}

const UP: &str = "
CREATE TABLE studio_workspaces (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    sku TEXT NOT NULL,
    title TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX studio_workspaces_sku ON studio_workspaces (account_id, sku);
CREATE INDEX studio_workspaces_list ON studio_workspaces (account_id, state, id);
CREATE TABLE studio_pairs (
    id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    tenant_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    source_url TEXT,
    source_upload_id TEXT,
    source_key TEXT,
    result_key TEXT,
    result_url TEXT,
    approved BOOLEAN NOT NULL,
    archived BOOLEAN NOT NULL,
    metadata TEXT NOT NULL,
    job_id TEXT,
    task_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX studio_pairs_workspace ON studio_pairs (workspace_id, id);
CREATE INDEX studio_pairs_task ON studio_pairs (task_id);
CREATE TABLE studio_prompt_groups (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    account_id TEXT NOT NULL,
    name TEXT NOT NULL,
    latest_version INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX studio_prompt_groups_name ON studio_prompt_groups (account_id, name);
CREATE TABLE studio_prompt_templates (
    group_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    position INTEGER NOT NULL,
    name TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (group_id, version, position)
);
CREATE TABLE studio_preferences (
    account_id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    output_size TEXT NOT NULL,
    model TEXT NOT NULL,
    settings TEXT NOT NULL,
    active_group_id TEXT,
    updated_at BIGINT NOT NULL
)
";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(m, UP).await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let db = m.get_connection();
        for table in [
            "studio_preferences",
            "studio_prompt_templates",
            "studio_prompt_groups",
            "studio_pairs",
            "studio_workspaces",
        ] {
            db.execute_unprepared(&format!("DROP TABLE {table}"))
                .await?;
        }
        Ok(())
    }
}
