//! Sources uploaded through UploadSource, stored in object storage under the tenant's prefix.

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter};

use super::entities::upload;

/// Records an upload whose bytes are already stored.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    model: upload::ActiveModel,
) -> Result<upload::Model, DbErr> {
    model.insert(db).await
}

/// The upload with this id, if it belongs to the tenant.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    id: &str,
) -> Result<Option<upload::Model>, DbErr> {
    upload::Entity::find_by_id(id.to_string())
        .filter(upload::Column::TenantId.eq(tenant_id))
        .one(db)
        .await
}
