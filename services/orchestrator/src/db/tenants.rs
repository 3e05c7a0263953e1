//! Tenants and their API keys. Keys are `atl_` + 64 hex characters of 32 random bytes and are stored
//! only as their SHA-256: the keys are random, so a fast hash is enough and lookups stay one index probe.

use rand::RngCore;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
};
use sha2::{Digest, Sha256};

use super::entities::{api_key, tenant};
use crate::domain::now_ms;

/// Creates a tenant.
pub async fn create<C: ConnectionTrait>(db: &C, name: &str) -> Result<tenant::Model, DbErr> {
    tenant::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        name: Set(name.to_string()),
        created_at: Set(now_ms()),
    }
    .insert(db)
    .await
}

/// The tenant with this id.
pub async fn find<C: ConnectionTrait>(db: &C, id: &str) -> Result<Option<tenant::Model>, DbErr> {
    tenant::Entity::find_by_id(id.to_string()).one(db).await
}

/// The stored form of a key.
pub fn hash_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Issues a key; the secret is returned once and never stored.
pub async fn create_key<C: ConnectionTrait>(
    db: &C,
    tenant_id: &str,
    account: Option<&str>,
) -> Result<(api_key::Model, String), DbErr> {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let secret = format!("atl_{}", hex::encode(raw));
    let model = api_key::ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        tenant_id: Set(tenant_id.to_string()),
        account: Set(account.map(str::to_string)),
        prefix: Set(secret[..12].to_string()),
        hash: Set(hash_key(&secret)),
        created_at: Set(now_ms()),
        revoked_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok((model, secret))
}

/// The active key whose secret hashes to `hash` ([`hash_key`]).
pub async fn find_key_by_hash<C: ConnectionTrait>(
    db: &C,
    hash: &str,
) -> Result<Option<api_key::Model>, DbErr> {
    api_key::Entity::find()
        .filter(api_key::Column::Hash.eq(hash))
        .filter(api_key::Column::RevokedAt.is_null())
        .one(db)
        .await
}

/// Revokes a key; revoking twice keeps the first time.
pub async fn revoke_key<C: ConnectionTrait>(
    db: &C,
    key_id: &str,
) -> Result<Option<api_key::Model>, DbErr> {
    let Some(key) = api_key::Entity::find_by_id(key_id.to_string())
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    if key.revoked_at.is_some() {
        return Ok(Some(key));
    }
    let mut active: api_key::ActiveModel = key.into();
    active.revoked_at = Set(Some(now_ms()));
    Ok(Some(active.update(db).await?))
}
