//! Who is calling: the admin (token given at start) or a tenant (API key), and which account it acts as.
//!
//! [`Auth`] resolves a caller from the request's headers; the authentication layer
//! ([`crate::layers::auth`]) calls it once per request and leaves the caller in the request's
//! extensions, where handlers read it with [`crate::layers::CallContext::caller`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderMap;
use sea_orm::DatabaseConnection;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::db::{self, entities::api_key, jobs::Scope};
use crate::error::{ApiError, ApiResult};

/// Metadata naming the account a tenant-wide key acts as.
pub const ACCOUNT_HEADER: &str = "x-atelier-account";

/// The longest account external id accepted.
pub const MAX_ACCOUNT_LEN: usize = 128;

/// An authenticated caller.
#[derive(Clone, Debug)]
pub enum Caller {
    Admin,
    Tenant(TenantCaller),
}

/// The admin token's caller, as handlers of admin-only calls read it.
#[derive(Clone, Copy, Debug)]
pub struct Admin;

/// A view of the caller that a handler asks for; the authentication layer has already refused
/// callers that the method does not admit.
pub trait FromCaller: Sized {
    /// This view of `caller`, if it is one.
    fn from_caller(caller: &Caller) -> Option<Self>;
}

impl FromCaller for Caller {
    fn from_caller(caller: &Caller) -> Option<Self> {
        Some(caller.clone())
    }
}

impl FromCaller for TenantCaller {
    fn from_caller(caller: &Caller) -> Option<Self> {
        match caller {
            Caller::Tenant(t) => Some(t.clone()),
            Caller::Admin => None,
        }
    }
}

impl FromCaller for Admin {
    fn from_caller(caller: &Caller) -> Option<Self> {
        matches!(caller, Caller::Admin).then_some(Admin)
    }
}

/// A tenant's key and the account it acts as, if any.
#[derive(Clone, Debug)]
pub struct TenantCaller {
    pub tenant_id: String,
    /// The account a scoped key is bound to, or the one a tenant-wide key named for this call.
    pub account: Option<String>,
    /// Whether the key can act only as `account`.
    pub scoped: bool,
}

impl TenantCaller {
    /// The account the call acts as; calls that need one fail with a clear message without it.
    pub fn require_account(&self) -> ApiResult<&str> {
        self.account.as_deref().ok_or_else(|| {
            ApiError::field(
                ACCOUNT_HEADER,
                "name the account with the x-atelier-account metadata",
            )
        })
    }

    /// What this caller may see: the tenant, narrowed to the named account. An account that does not
    /// exist yet sees nothing.
    pub async fn scope(&self, db: &DatabaseConnection) -> ApiResult<Option<Scope>> {
        let account_id = match &self.account {
            None => None,
            Some(external) => match db::accounts::find(db, &self.tenant_id, external).await? {
                Some(account) => Some(account.id),
                None => return Ok(None),
            },
        };
        Ok(Some(Scope {
            tenant_id: self.tenant_id.clone(),
            account_id,
        }))
    }
}

/// Metadata holding the service token, for calls that workers of the operator make.
pub const SERVICE_TOKEN_HEADER: &str = "x-api-key";

/// How long a key read from the database is trusted before it is read again.
const KEY_TTL: Duration = Duration::from_secs(5);
/// Most keys remembered at once; past it the cache starts over.
const MAX_CACHED_KEYS: usize = 10_000;

/// API keys recently found in the database, by hash, so a busy client's calls do not each read
/// `api_keys`. A revoke empties it: on this replica at once, on the others when the PostgreSQL
/// listener hears of it, and at the latest after [`KEY_TTL`].
#[derive(Clone, Default)]
pub struct KeyCache {
    keys: Arc<Mutex<HashMap<String, (Instant, api_key::Model)>>>,
}

impl KeyCache {
    fn get(&self, hash: &str) -> Option<api_key::Model> {
        let keys = self.keys.lock().ok()?;
        keys.get(hash)
            .filter(|(at, _)| at.elapsed() < KEY_TTL)
            .map(|(_, key)| key.clone())
    }

    fn put(&self, hash: String, key: api_key::Model) {
        if let Ok(mut keys) = self.keys.lock() {
            if keys.len() >= MAX_CACHED_KEYS {
                keys.clear();
            }
            keys.insert(hash, (Instant::now(), key));
        }
    }

    /// Forgets every key: one was revoked.
    pub fn forget_all(&self) {
        if let Ok(mut keys) = self.keys.lock() {
            keys.clear();
        }
    }
}

/// Resolves callers from `authorization: Bearer …` headers (gRPC metadata).
#[derive(Clone)]
pub struct Auth {
    db: DatabaseConnection,
    admin_token: String,
    service_token: String,
    keys: KeyCache,
}

impl Auth {
    /// Checks keys against the database (remembered in `keys` for a few seconds), the admin token
    /// and the service token (the one the processors accept).
    pub fn new(
        db: DatabaseConnection,
        admin_token: String,
        service_token: String,
        keys: KeyCache,
    ) -> Self {
        Self {
            db,
            admin_token,
            service_token,
            keys,
        }
    }

    /// The active key with this secret, from the cache or the database.
    async fn key(&self, secret: &str) -> ApiResult<Option<api_key::Model>> {
        let hash = db::tenants::hash_key(secret);
        if let Some(key) = self.keys.get(&hash) {
            return Ok(Some(key));
        }
        let found = db::tenants::find_key_by_hash(&self.db, &hash).await?;
        if let Some(key) = &found {
            self.keys.put(hash, key.clone());
        }
        Ok(found)
    }

    /// Whether the call carries the service token in `x-api-key` (compared in constant time); 1002
    /// without it.
    pub fn service(&self, headers: &HeaderMap) -> ApiResult<()> {
        let presented = headers
            .get(SERVICE_TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        // Digests of equal length, so the comparison tells nothing about the token's length either.
        let presented_digest = Sha256::digest(presented);
        let token_digest = Sha256::digest(self.service_token.as_bytes());
        let matches = !self.service_token.is_empty()
            && !presented.is_empty()
            && bool::from(presented_digest.as_slice().ct_eq(token_digest.as_slice()));
        if matches {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(
                "this call is for workers of the operator: send the service token in x-api-key"
                    .into(),
            ))
        }
    }

    /// Who is calling; 1001 without valid credentials.
    pub async fn caller(&self, headers: &HeaderMap) -> ApiResult<Caller> {
        let header = headers
            .get("authorization")
            .ok_or(ApiError::Unauthenticated(
                "missing credentials: send authorization: Bearer <api key>",
            ))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 256)
            .ok_or(ApiError::Unauthenticated(
                "malformed authorization: expected Bearer <api key>",
            ))?;
        if !self.admin_token.is_empty()
            && bool::from(token.as_bytes().ct_eq(self.admin_token.as_bytes()))
        {
            return Ok(Caller::Admin);
        }
        let key = self
            .key(token)
            .await?
            .ok_or(ApiError::Unauthenticated("invalid or revoked API key"))?;
        let named = named_account(headers)?;
        let (account, scoped) = match (key.account, named) {
            (Some(bound), Some(named)) if bound != named => {
                return Err(ApiError::PermissionDenied(
                    "this key acts only as its own account".into(),
                ));
            }
            (Some(bound), _) => (Some(bound), true),
            (None, named) => (named, false),
        };
        Ok(Caller::Tenant(TenantCaller {
            tenant_id: key.tenant_id,
            account,
            scoped,
        }))
    }
}

/// What the admin token is told where a method needs a tenant's key.
pub const ADMIN_IS_NO_TENANT: &str = "the admin token cannot act as a tenant; use an API key";

/// What a tenant's key is told where a method needs the admin token.
pub const NEEDS_ADMIN: &str = "this call needs the admin token";

impl Caller {
    /// The tenant calling; the admin token is refused with `admin_refused` (1002).
    pub fn tenant(self, admin_refused: &'static str) -> ApiResult<TenantCaller> {
        match self {
            Caller::Tenant(t) => Ok(t),
            Caller::Admin => Err(ApiError::PermissionDenied(admin_refused.into())),
        }
    }

    /// The admin; tenants are refused (1002).
    pub fn admin(self) -> ApiResult<Admin> {
        match self {
            Caller::Admin => Ok(Admin),
            Caller::Tenant(_) => Err(ApiError::PermissionDenied(NEEDS_ADMIN.into())),
        }
    }
}

fn named_account(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(value) = headers.get(ACCOUNT_HEADER) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::field(ACCOUNT_HEADER, "must be printable ASCII"))?
        .trim();
    validate_account(ACCOUNT_HEADER, text)?;
    Ok(Some(text.to_string()))
}

/// Checks an account external id as given in metadata or a request field.
pub fn validate_account(field: &str, text: &str) -> ApiResult<()> {
    if text.is_empty() {
        return Err(ApiError::field(field, "must not be empty"));
    }
    if text.len() > MAX_ACCOUNT_LEN {
        return Err(ApiError::field(
            field,
            format!("at most {MAX_ACCOUNT_LEN} bytes"),
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(ApiError::field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}
