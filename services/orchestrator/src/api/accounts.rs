//! AccountService: balances and the ledger for tenants; tenants, keys, accounts, quota and membership
//! for the admin.

use atelier_proto::v1 as pb;
use atelier_proto::v1::account_service_server::AccountService;
use sea_orm::TransactionTrait;
use tonic::{Request, Response, Status};

use super::{convert, page_size, webhooks};
use crate::auth::{validate_account, Admin, Caller, TenantCaller};
use crate::context::Context;
use crate::db::{self, entities::account};
use crate::domain::{from_timestamp, timestamp};
use crate::error::{ApiError, ApiResult};
use crate::layers::CallContext;

/// The AccountService implementation.
pub struct Accounts {
    ctx: Context,
}

impl Accounts {
    /// Serves accounts from the shared context.
    pub fn new(ctx: Context) -> Self {
        Self { ctx }
    }

    /// The account a call is about: a tenant's own (request field or metadata), or for the admin the
    /// one named by tenant id and account.
    async fn target(
        &self,
        caller: Caller,
        tenant_id: &str,
        account: &str,
    ) -> ApiResult<account::Model> {
        let (tenant_id, external) = match caller {
            Caller::Admin => (tenant_id.to_string(), account.to_string()),
            Caller::Tenant(t) => {
                let own = match (&t.account, account) {
                    (Some(named), "") => named.clone(),
                    (Some(named), requested) if t.scoped && named != requested => {
                        return Err(ApiError::NotFound("account"))
                    }
                    (_, "") => return Err(ApiError::field("account", "name the account")),
                    (_, requested) => requested.to_string(),
                };
                (t.tenant_id, own)
            }
        };
        validate_account("account", &external)?;
        db::accounts::find(&self.ctx.db, &tenant_id, &external)
            .await?
            .ok_or(ApiError::NotFound("account"))
    }

    async fn render(&self, account: &account::Model) -> ApiResult<pb::Account> {
        let active = db::accounts::active_jobs(&self.ctx.db, &account.id).await?;
        Ok(convert::account(account, active))
    }

    /// The account the admin names by tenant id and external id.
    async fn admin_account(
        &self,
        _admin: Admin,
        tenant_id: &str,
        external: &str,
    ) -> ApiResult<account::Model> {
        validate_account("account", external)?;
        db::accounts::find(&self.ctx.db, tenant_id, external)
            .await?
            .ok_or(ApiError::NotFound("account"))
    }

    async fn grant(&self, admin: Admin, req: pb::GrantQuotaRequest) -> ApiResult<pb::Account> {
        let account = self
            .admin_account(admin, &req.tenant_id, &req.account)
            .await?;
        if req.amount <= 0 {
            return Err(ApiError::field("amount", "must be positive"));
        }
        let key = if req.idempotency_key.is_empty() {
            format!("grant:{}", uuid::Uuid::now_v7())
        } else {
            format!("grant:{}:{}", account.id, req.idempotency_key)
        };
        let reason = if req.reason.is_empty() {
            "quota granted"
        } else {
            req.reason.as_str()
        };
        let txn = self.ctx.db.begin().await?;
        db::accounts::book(
            &txn,
            db::accounts::Entry {
                account_id: &account.id,
                kind: "grant",
                amount: req.amount,
                reason,
                unique_key: key,
                job_id: None,
                task_id: None,
            },
        )
        .await?;
        txn.commit().await?;
        let account = db::accounts::find(&self.ctx.db, &account.tenant_id, &account.external_id)
            .await?
            .ok_or(ApiError::NotFound("account"))?;
        self.render(&account).await
    }
}

#[tonic::async_trait]
impl AccountService for Accounts {
    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let req = request.get_ref();
        let account = self
            .target(request.caller()?, &req.tenant_id, &req.account)
            .await?;
        Ok(Response::new(self.render(&account).await?))
    }

    async fn list_ledger(
        &self,
        request: Request<pb::ListLedgerRequest>,
    ) -> Result<Response<pb::ListLedgerResponse>, Status> {
        let req = request.get_ref();
        let limit = page_size(req.page_size, 50, 500)?;
        let account = self
            .target(request.caller()?, &req.tenant_id, &req.account)
            .await?;
        let before = (!req.page_token.is_empty()).then_some(req.page_token.as_str());
        let rows = db::accounts::ledger_page(&self.ctx.db, &account.id, before, limit)
            .await
            .map_err(ApiError::from)?;
        let next_page_token = match rows.last() {
            Some(last) if rows.len() as u64 == limit => last.id.clone(),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListLedgerResponse {
            entries: rows.iter().map(convert::ledger_entry).collect(),
            next_page_token,
        }))
    }

    async fn create_tenant(
        &self,
        request: Request<pb::CreateTenantRequest>,
    ) -> Result<Response<pb::Tenant>, Status> {
        request.caller::<Admin>()?;
        let name = request.get_ref().name.trim();
        if name.is_empty() || name.len() > 200 {
            return Err(ApiError::field("name", "1..=200 bytes").into());
        }
        let t = db::tenants::create(&self.ctx.db, name)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::Tenant {
            id: t.id,
            name: t.name,
            created_at: Some(timestamp(t.created_at)),
        }))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        request.caller::<Admin>()?;
        let req = request.get_ref();
        db::tenants::find(&self.ctx.db, &req.tenant_id)
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound("tenant"))?;
        let account = (!req.account.is_empty()).then_some(req.account.as_str());
        if let Some(a) = account {
            validate_account("account", a)?;
        }
        let (key, secret) = db::tenants::create_key(&self.ctx.db, &req.tenant_id, account)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::CreateApiKeyResponse {
            key: Some(api_key(key)),
            secret,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::ApiKey>, Status> {
        request.caller::<Admin>()?;
        let txn = self.ctx.db.begin().await.map_err(ApiError::from)?;
        let key = db::tenants::revoke_key(&txn, &request.get_ref().key_id)
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound("api key"))?;
        // Other replicas forget their remembered keys when this commits.
        db::events::announce_keys_changed(&txn)
            .await
            .map_err(ApiError::from)?;
        txn.commit().await.map_err(ApiError::from)?;
        self.ctx.keys.forget_all();
        Ok(Response::new(api_key(key)))
    }

    async fn upsert_account(
        &self,
        request: Request<pb::UpsertAccountRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        request.caller::<Admin>()?;
        let req = request.get_ref();
        validate_account("external_id", &req.external_id)?;
        db::tenants::find(&self.ctx.db, &req.tenant_id)
            .await
            .map_err(ApiError::from)?
            .ok_or(ApiError::NotFound("tenant"))?;
        let account = db::accounts::upsert(&self.ctx.db, &req.tenant_id, &req.external_id)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(self.render(&account).await?))
    }

    async fn grant_quota(
        &self,
        request: Request<pb::GrantQuotaRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let admin = request.caller::<Admin>()?;
        Ok(Response::new(
            self.grant(admin, request.into_inner()).await?,
        ))
    }

    async fn set_membership(
        &self,
        request: Request<pb::SetMembershipRequest>,
    ) -> Result<Response<pb::Account>, Status> {
        let req = request.get_ref();
        let account = self
            .admin_account(request.caller()?, &req.tenant_id, &req.account)
            .await?;
        let expires = req.expires_at.as_ref().map(from_timestamp);
        let account = db::accounts::set_membership(&self.ctx.db, account, req.active, expires)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(self.render(&account).await?))
    }

    async fn set_retention(
        &self,
        request: Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::Retention>, Status> {
        request.caller::<Admin>()?;
        let wanted = request.into_inner().retention.unwrap_or_default();
        const MAX_DAYS: u32 = 36_500;
        for (field, days) in [
            ("retention.output_days", wanted.output_days),
            ("retention.upload_days", wanted.upload_days),
            ("retention.event_days", wanted.event_days),
        ] {
            if days > MAX_DAYS {
                return Err(ApiError::field(field, format!("at most {MAX_DAYS} days")).into());
            }
        }
        let days = [wanted.output_days, wanted.upload_days, wanted.event_days];
        let found = db::retention::set_tenant_retention(&self.ctx.db, &wanted.tenant_id, days)
            .await
            .map_err(ApiError::from)?;
        if !found {
            return Err(ApiError::NotFound("tenant").into());
        }
        Ok(Response::new(pb::Retention {
            tenant_id: wanted.tenant_id,
            output_days: days[0],
            upload_days: days[1],
            event_days: days[2],
        }))
    }

    async fn create_webhook_endpoint(
        &self,
        request: Request<pb::CreateWebhookEndpointRequest>,
    ) -> Result<Response<pb::WebhookEndpoint>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            webhooks::create(&self.ctx, caller, request.into_inner()).await?,
        ))
    }

    async fn list_webhook_endpoints(
        &self,
        request: Request<pb::ListWebhookEndpointsRequest>,
    ) -> Result<Response<pb::ListWebhookEndpointsResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(webhooks::list(&self.ctx, caller).await?))
    }

    async fn delete_webhook_endpoint(
        &self,
        request: Request<pb::DeleteWebhookEndpointRequest>,
    ) -> Result<Response<pb::WebhookEndpoint>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            webhooks::delete(&self.ctx, caller, request.into_inner()).await?,
        ))
    }

    async fn list_webhook_deliveries(
        &self,
        request: Request<pb::ListWebhookDeliveriesRequest>,
    ) -> Result<Response<pb::ListWebhookDeliveriesResponse>, Status> {
        let caller = request.caller::<TenantCaller>()?;
        Ok(Response::new(
            webhooks::deliveries(&self.ctx, caller, request.into_inner()).await?,
        ))
    }
}

fn api_key(key: db::entities::api_key::Model) -> pb::ApiKey {
    pb::ApiKey {
        id: key.id,
        tenant_id: key.tenant_id,
        account: key.account.unwrap_or_default(),
        prefix: key.prefix,
        created_at: Some(timestamp(key.created_at)),
        revoked_at: key.revoked_at.map(timestamp),
    }
}
