//! `accounts.submits`: how many times jobs were charged to the account (a batch counts each of its
//! jobs), moved in the statement that charges. A submit counts the account's active jobs before it
//! takes the account's lock, with this counter in the same read; after its charge the counter tells
//! how many jobs were added since that read, so the active-jobs limit is known exactly without
//! counting again under the lock unless the account is near its limit.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0011_account_submits"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(
            m,
            "ALTER TABLE accounts ADD COLUMN submits BIGINT NOT NULL DEFAULT 0",
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        crate::run_script(m, "ALTER TABLE accounts DROP COLUMN submits").await
    }
}
