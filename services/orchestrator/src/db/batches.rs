//! Batches: jobs submitted together by SubmitBatch. They hold one unit of the account's active-jobs
//! limit (see [`super::accounts::active_units`]) and their batch gets one callback once every job
//! is terminal.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    Set,
};

use super::entities::{batch, job};
use super::statement;
use crate::domain::JobState;

/// The account's batch with this id.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    id: &str,
) -> Result<Option<batch::Model>, DbErr> {
    batch::Entity::find_by_id((account_id.to_string(), id.to_string()))
        .one(db)
        .await
}

/// Records a batch; the caller inserts its jobs in the same transaction.
pub async fn insert<C: ConnectionTrait>(db: &C, model: batch::Model) -> Result<(), DbErr> {
    batch::ActiveModel {
        account_id: Set(model.account_id),
        id: Set(model.id),
        tenant_id: Set(model.tenant_id),
        callback_url: Set(model.callback_url),
        family: Set(model.family),
        total: Set(model.total),
        created_at: Set(model.created_at),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Jobs of the batch not yet terminal.
pub async fn unfinished<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    id: &str,
) -> Result<i64, DbErr> {
    db.query_one(statement(
        db.get_database_backend(),
        "SELECT COUNT(*) FROM jobs WHERE account_id = ? AND batch_id = ? AND state IN (?, ?)",
        vec![
            account_id.into(),
            id.into(),
            JobState::Queued.into(),
            JobState::Running.into(),
        ],
    ))
    .await?
    .map(|r| r.try_get_by_index::<i64>(0))
    .transpose()
    .map(Option::unwrap_or_default)
}

/// The jobs of the batch, in submission order.
pub async fn jobs<C: ConnectionTrait>(
    db: &C,
    account_id: &str,
    id: &str,
) -> Result<Vec<job::Model>, DbErr> {
    job::Entity::find()
        .filter(job::Column::AccountId.eq(account_id))
        .filter(job::Column::BatchId.eq(id))
        .order_by_asc(job::Column::CreatedAt)
        .order_by_asc(job::Column::Id)
        .all(db)
        .await
}
