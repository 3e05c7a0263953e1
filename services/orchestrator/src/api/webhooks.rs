//! Webhook endpoints and the record of deliveries, for tenant keys. A tenant-wide key manages every
//! endpoint of its tenant and sees the secret of the endpoint that signs jobs' `callback_url`
//! deliveries; an account-scoped key manages only its account's endpoints.

use atelier_proto::v1 as pb;

use super::page_size;
use crate::auth::{validate_account, TenantCaller};
use crate::context::Context;
use crate::db::{self, webhooks as store};
use crate::domain::timestamp;
use crate::error::{ApiError, ApiResult};

const MAX_URL_LEN: usize = 2048;

fn endpoint(e: store::Endpoint, show_secret: bool) -> pb::WebhookEndpoint {
    pb::WebhookEndpoint {
        id: e.id,
        tenant_id: e.tenant_id,
        account: e.account.unwrap_or_default(),
        url: e.url,
        secret: if show_secret { e.secret } else { String::new() },
        events: e.events.split(',').map(str::to_string).collect(),
        created_at: Some(timestamp(e.created_at)),
    }
}

fn check_url(url: &str) -> ApiResult<()> {
    let parsed = url::Url::parse(url).map_err(|_| ApiError::field("url", "not a valid URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(ApiError::field("url", "must be an http(s) URL with a host"));
    }
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::field(
            "url",
            format!("at most {MAX_URL_LEN} bytes"),
        ));
    }
    Ok(())
}

/// The account id an endpoint call is limited to: the scoped key's own account.
async fn own_account(ctx: &Context, caller: &TenantCaller) -> ApiResult<Option<String>> {
    if !caller.scoped {
        return Ok(None);
    }
    let external = caller.require_account()?;
    let account = db::accounts::find(&ctx.db, &caller.tenant_id, external)
        .await?
        .ok_or(ApiError::NotFound("account"))?;
    Ok(Some(account.id))
}

/// CreateWebhookEndpoint: the secret is shown in this answer only.
pub async fn create(
    ctx: &Context,
    caller: TenantCaller,
    req: pb::CreateWebhookEndpointRequest,
) -> ApiResult<pb::WebhookEndpoint> {
    check_url(req.url.trim())?;
    let mut events: Vec<&str> = Vec::new();
    for e in &req.events {
        match e.trim() {
            kind @ (store::TERMINAL | store::PROGRESS) if !events.contains(&kind) => {
                events.push(kind)
            }
            store::TERMINAL | store::PROGRESS => {}
            _ => {
                return Err(ApiError::field(
                    "events",
                    "each one of \"terminal\" or \"progress\"",
                ))
            }
        }
    }
    if events.is_empty() {
        events.push(store::TERMINAL);
    }
    let external = match (caller.scoped, req.account.trim()) {
        (true, "") => Some(caller.require_account()?.to_string()),
        (true, named) if Some(named) != caller.account.as_deref() => {
            return Err(ApiError::NotFound("account"))
        }
        (_, "") => None,
        (_, named) => Some(named.to_string()),
    };
    let account = match &external {
        Some(external) => {
            validate_account("account", external)?;
            let found = db::accounts::find(&ctx.db, &caller.tenant_id, external)
                .await?
                .ok_or(ApiError::NotFound("account"))?;
            Some((found.id, external.clone()))
        }
        None => None,
    };
    let created = store::create_endpoint(
        &ctx.db,
        &caller.tenant_id,
        account
            .as_ref()
            .map(|(id, ext)| (id.as_str(), ext.as_str())),
        req.url.trim(),
        &events,
    )
    .await?;
    tracing::info!(endpoint_id = %created.id, tenant_id = %caller.tenant_id, "webhook endpoint created");
    Ok(endpoint(created, true))
}

/// ListWebhookEndpoints; for a tenant-wide key the callback endpoint comes first, with its secret.
pub async fn list(
    ctx: &Context,
    caller: TenantCaller,
) -> ApiResult<pb::ListWebhookEndpointsResponse> {
    let own = own_account(ctx, &caller).await?;
    let mut endpoints = Vec::new();
    if own.is_none() {
        let callback = store::callback_endpoint(&ctx.db, &caller.tenant_id).await?;
        endpoints.push(endpoint(callback, true));
    }
    for e in store::endpoints(&ctx.db, &caller.tenant_id, None).await? {
        if own.is_none() || e.account_id == own {
            endpoints.push(endpoint(e, false));
        }
    }
    Ok(pb::ListWebhookEndpointsResponse { endpoints })
}

/// DeleteWebhookEndpoint: no more deliveries; pending ones are given up.
pub async fn delete(
    ctx: &Context,
    caller: TenantCaller,
    req: pb::DeleteWebhookEndpointRequest,
) -> ApiResult<pb::WebhookEndpoint> {
    let own = own_account(ctx, &caller).await?;
    let deleted =
        store::delete_endpoint(&ctx.db, &caller.tenant_id, own.as_deref(), &req.endpoint_id)
            .await?
            .ok_or(ApiError::NotFound("webhook endpoint"))?;
    Ok(endpoint(deleted, false))
}

/// ListWebhookDeliveries: every attempt, oldest first, filtered by endpoint and job.
pub async fn deliveries(
    ctx: &Context,
    caller: TenantCaller,
    req: pb::ListWebhookDeliveriesRequest,
) -> ApiResult<pb::ListWebhookDeliveriesResponse> {
    let limit = page_size(req.page_size, 50, 100)?;
    let own = own_account(ctx, &caller).await?;
    let after = req.page_token.trim();
    if !after.is_empty() && !after.starts_with("wa_") {
        return Err(ApiError::field(
            "page_token",
            "not a token from an earlier page",
        ));
    }
    let filter = store::AttemptFilter {
        endpoint_id: Some(req.endpoint_id.trim()).filter(|s| !s.is_empty()),
        job_id: Some(req.job_id.trim()).filter(|s| !s.is_empty()),
        account_id: own.as_deref(),
        after: Some(after).filter(|s| !s.is_empty()),
    };
    let rows = store::attempts(&ctx.db, &caller.tenant_id, filter, limit + 1).await?;
    let more = rows.len() as u64 > limit;
    let mut deliveries: Vec<pb::WebhookDelivery> = rows
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(usize::MAX))
        .map(|a| pb::WebhookDelivery {
            id: a.id,
            endpoint_id: a.endpoint_id,
            event_id: a.event_id,
            job_id: a.job_id,
            attempt: u32::try_from(a.attempt).unwrap_or_default(),
            status: u32::try_from(a.status).unwrap_or_default(),
            error: a.error,
            attempted_at: Some(timestamp(a.attempted_at)),
            next_attempt_at: a.next_attempt_at.map(timestamp),
            delivered: a.delivered,
        })
        .collect();
    let next_page_token = if more {
        deliveries.last().map(|d| d.id.clone()).unwrap_or_default()
    } else {
        String::new()
    };
    deliveries.shrink_to_fit();
    Ok(pb::ListWebhookDeliveriesResponse {
        deliveries,
        next_page_token,
    })
}
