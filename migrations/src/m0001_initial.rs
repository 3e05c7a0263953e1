//! Tenants, keys, accounts, the quota ledger, uploads, jobs, tasks and job events.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m0001_initial"
    }
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Name,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    TenantId,
    Account,
    Prefix,
    Hash,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    TenantId,
    ExternalId,
    Balance,
    Member,
    MembershipExpiresAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Ledger {
    Table,
    AccountId,
    Kind,
    Amount,
    Reason,
    UniqueKey,
    JobId,
    TaskId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Uploads {
    Table,
    TenantId,
    AccountId,
    ObjectKey,
    Bytes,
    Sha256,
    Filename,
    ContentType,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    TenantId,
    AccountId,
    Account,
    Kind,
    State,
    Params,
    Labels,
    IdempotencyKey,
    RequestHash,
    CallbackUrl,
    UnitPrice,
    Cost,
    Refunded,
    LastSequence,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
    DeadlineAt,
}

#[derive(DeriveIden)]
enum Tasks {
    Table,
    JobId,
    Idx,
    Source,
    SourceRef,
    State,
    Attempts,
    Stage,
    Percent,
    Outputs,
    SourceInfo,
    FailureCode,
    FailureMessage,
    FromCache,
    LeaseOwner,
    LeaseExpiresAt,
    RunAfter,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum JobEvents {
    Table,
    Id,
    JobId,
    TenantId,
    AccountId,
    Sequence,
    Payload,
    CreatedAt,
}

fn id() -> ColumnDef {
    ColumnDef::new(Alias::new("id")).string_len(36).not_null().primary_key().to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Tenants::Table)
                .col(id())
                .col(ColumnDef::new(Tenants::Name).string().not_null())
                .col(ColumnDef::new(Tenants::CreatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(ApiKeys::Table)
                .col(id())
                .col(ColumnDef::new(ApiKeys::TenantId).string_len(36).not_null())
                .col(ColumnDef::new(ApiKeys::Account).string().null())
                .col(ColumnDef::new(ApiKeys::Prefix).string().not_null())
                .col(ColumnDef::new(ApiKeys::Hash).string().not_null().unique_key())
                .col(ColumnDef::new(ApiKeys::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(ApiKeys::RevokedAt).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Accounts::Table)
                .col(id())
                .col(ColumnDef::new(Accounts::TenantId).string_len(36).not_null())
                .col(ColumnDef::new(Accounts::ExternalId).string().not_null())
                .col(ColumnDef::new(Accounts::Balance).big_integer().not_null().default(0))
                .col(ColumnDef::new(Accounts::Member).boolean().not_null().default(false))
                .col(ColumnDef::new(Accounts::MembershipExpiresAt).big_integer().null())
                .col(ColumnDef::new(Accounts::CreatedAt).big_integer().not_null())
                // The balance can never go negative, whatever the concurrency (SPEC §4 Quota).
                .check(Expr::col(Accounts::Balance).gte(0))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("accounts_tenant_external")
                .table(Accounts::Table)
                .col(Accounts::TenantId)
                .col(Accounts::ExternalId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Ledger::Table)
                .col(id())
                .col(ColumnDef::new(Ledger::AccountId).string_len(36).not_null())
                .col(ColumnDef::new(Ledger::Kind).string().not_null())
                .col(ColumnDef::new(Ledger::Amount).big_integer().not_null())
                .col(ColumnDef::new(Ledger::Reason).string().not_null())
                // One row per charge, refund or keyed grant: a refund can never be paid twice.
                .col(ColumnDef::new(Ledger::UniqueKey).string().not_null().unique_key())
                .col(ColumnDef::new(Ledger::JobId).string_len(36).null())
                .col(ColumnDef::new(Ledger::TaskId).string_len(36).null())
                .col(ColumnDef::new(Ledger::CreatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("ledger_account").table(Ledger::Table).col(Ledger::AccountId).col(Ledger::CreatedAt).to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Uploads::Table)
                .col(id())
                .col(ColumnDef::new(Uploads::TenantId).string_len(36).not_null())
                .col(ColumnDef::new(Uploads::AccountId).string_len(36).not_null())
                .col(ColumnDef::new(Uploads::ObjectKey).string().not_null())
                .col(ColumnDef::new(Uploads::Bytes).big_integer().not_null())
                .col(ColumnDef::new(Uploads::Sha256).string().not_null())
                .col(ColumnDef::new(Uploads::Filename).string().not_null())
                .col(ColumnDef::new(Uploads::ContentType).string().not_null())
                .col(ColumnDef::new(Uploads::CreatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Jobs::Table)
                .col(id())
                .col(ColumnDef::new(Jobs::TenantId).string_len(36).not_null())
                .col(ColumnDef::new(Jobs::AccountId).string_len(36).not_null())
                .col(ColumnDef::new(Jobs::Account).string().not_null())
                .col(ColumnDef::new(Jobs::Kind).string().not_null())
                .col(ColumnDef::new(Jobs::State).string().not_null())
                .col(ColumnDef::new(Jobs::Params).binary().not_null())
                .col(ColumnDef::new(Jobs::Labels).text().not_null())
                .col(ColumnDef::new(Jobs::IdempotencyKey).string().null())
                .col(ColumnDef::new(Jobs::RequestHash).string().null())
                .col(ColumnDef::new(Jobs::CallbackUrl).string().null())
                .col(ColumnDef::new(Jobs::UnitPrice).big_integer().not_null())
                .col(ColumnDef::new(Jobs::Cost).big_integer().not_null())
                .col(ColumnDef::new(Jobs::Refunded).big_integer().not_null().default(0))
                .col(ColumnDef::new(Jobs::LastSequence).big_integer().not_null().default(0))
                .col(ColumnDef::new(Jobs::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(Jobs::UpdatedAt).big_integer().not_null())
                .col(ColumnDef::new(Jobs::FinishedAt).big_integer().null())
                .col(ColumnDef::new(Jobs::DeadlineAt).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("jobs_tenant_created")
                .table(Jobs::Table)
                .col(Jobs::TenantId)
                .col(Jobs::CreatedAt)
                .to_owned(),
        )
        .await?;
        // Idempotency keys are per account; NULL keys never collide.
        m.create_index(
            Index::create()
                .name("jobs_account_idempotency")
                .table(Jobs::Table)
                .col(Jobs::AccountId)
                .col(Jobs::IdempotencyKey)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Tasks::Table)
                .col(id())
                .col(ColumnDef::new(Tasks::JobId).string_len(36).not_null())
                .col(ColumnDef::new(Tasks::Idx).integer().not_null())
                .col(ColumnDef::new(Tasks::Source).binary().null())
                .col(ColumnDef::new(Tasks::SourceRef).binary().null())
                .col(ColumnDef::new(Tasks::State).string().not_null())
                .col(ColumnDef::new(Tasks::Attempts).integer().not_null().default(0))
                .col(ColumnDef::new(Tasks::Stage).string().not_null().default(""))
                .col(ColumnDef::new(Tasks::Percent).integer().not_null().default(0))
                .col(ColumnDef::new(Tasks::Outputs).binary().null())
                .col(ColumnDef::new(Tasks::SourceInfo).binary().null())
                .col(ColumnDef::new(Tasks::FailureCode).integer().null())
                .col(ColumnDef::new(Tasks::FailureMessage).text().null())
                .col(ColumnDef::new(Tasks::FromCache).boolean().not_null().default(false))
                .col(ColumnDef::new(Tasks::LeaseOwner).string().null())
                .col(ColumnDef::new(Tasks::LeaseExpiresAt).big_integer().null())
                .col(ColumnDef::new(Tasks::RunAfter).big_integer().not_null())
                .col(ColumnDef::new(Tasks::CreatedAt).big_integer().not_null())
                .col(ColumnDef::new(Tasks::StartedAt).big_integer().null())
                .col(ColumnDef::new(Tasks::FinishedAt).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.create_index(Index::create().name("tasks_job").table(Tasks::Table).col(Tasks::JobId).col(Tasks::Idx).to_owned())
            .await?;
        m.create_index(
            Index::create()
                .name("tasks_dispatch")
                .table(Tasks::Table)
                .col(Tasks::State)
                .col(Tasks::RunAfter)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(JobEvents::Table)
                .col(ColumnDef::new(JobEvents::Id).big_integer().not_null().auto_increment().primary_key())
                .col(ColumnDef::new(JobEvents::JobId).string_len(36).not_null())
                .col(ColumnDef::new(JobEvents::TenantId).string_len(36).not_null())
                .col(ColumnDef::new(JobEvents::AccountId).string_len(36).not_null())
                .col(ColumnDef::new(JobEvents::Sequence).big_integer().not_null())
                .col(ColumnDef::new(JobEvents::Payload).binary().not_null())
                .col(ColumnDef::new(JobEvents::CreatedAt).big_integer().not_null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("job_events_sequence")
                .table(JobEvents::Table)
                .col(JobEvents::JobId)
                .col(JobEvents::Sequence)
                .unique()
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in ["job_events", "tasks", "jobs", "uploads", "ledger", "accounts", "api_keys", "tenants"] {
            m.drop_table(Table::drop().table(Alias::new(table)).to_owned()).await?;
        }
        Ok(())
    }
}
