//! `admin …`: tenants, keys, accounts, quota and membership, with the admin token.

use atelier_proto::v1 as pb;
use serde_json::json;

use crate::args::AdminCommand;
use crate::client::Api;
use crate::render::{human, json, note, print_json, print_line, print_text};

/// Runs one admin command.
pub async fn run(api: &Api, as_json: bool, command: &AdminCommand) -> anyhow::Result<()> {
    let mut accounts = api.accounts();
    match command {
        AdminCommand::CreateTenant { name } => {
            let tenant = accounts
                .create_tenant(api.admin_call(pb::CreateTenantRequest { name: name.clone() })?)
                .await?
                .into_inner();
            if as_json {
                print_json(&json::tenant(&tenant));
            } else {
                note(&format!("tenant {} created", tenant.name));
                print_line(&tenant.id);
            }
        }
        AdminCommand::CreateKey {
            tenant_id,
            for_account,
        } => {
            let request = pb::CreateApiKeyRequest {
                tenant_id: tenant_id.clone(),
                account: for_account.clone().unwrap_or_default(),
            };
            let created = accounts
                .create_api_key(api.admin_call(request)?)
                .await?
                .into_inner();
            if as_json {
                print_json(&json!({
                    "key": created.key.as_ref().map_or(serde_json::Value::Null, json::api_key),
                    "secret": created.secret,
                }));
            } else {
                if let Some(key) = &created.key {
                    let scope = if key.account.is_empty() {
                        "tenant-wide".to_string()
                    } else {
                        format!("for account {}", key.account)
                    };
                    note(&format!(
                        "key {} ({scope}); the secret below is shown only once",
                        key.id
                    ));
                }
                print_line(&created.secret);
            }
        }
        AdminCommand::RevokeKey { key_id } => {
            let key = accounts
                .revoke_api_key(api.admin_call(pb::RevokeApiKeyRequest {
                    key_id: key_id.clone(),
                })?)
                .await?
                .into_inner();
            if as_json {
                print_json(&json::api_key(&key));
            } else {
                print_line(&format!("key {} revoked", key.id));
            }
        }
        AdminCommand::UpsertAccount {
            tenant_id,
            external_id,
        } => {
            let request = pb::UpsertAccountRequest {
                tenant_id: tenant_id.clone(),
                external_id: external_id.clone(),
            };
            show(
                as_json,
                &accounts
                    .upsert_account(api.admin_call(request)?)
                    .await?
                    .into_inner(),
            );
        }
        AdminCommand::Grant {
            tenant_id,
            account,
            amount,
            reason,
            idempotency_key,
        } => {
            let request = pb::GrantQuotaRequest {
                tenant_id: tenant_id.clone(),
                account: account.clone(),
                amount: *amount,
                reason: reason.clone(),
                idempotency_key: idempotency_key.clone().unwrap_or_default(),
            };
            show(
                as_json,
                &accounts
                    .grant_quota(api.admin_call(request)?)
                    .await?
                    .into_inner(),
            );
        }
        AdminCommand::Membership {
            tenant_id,
            account,
            active,
            expires_at,
        } => {
            let request = pb::SetMembershipRequest {
                tenant_id: tenant_id.clone(),
                account: account.clone(),
                active: *active,
                expires_at: *expires_at,
            };
            show(
                as_json,
                &accounts
                    .set_membership(api.admin_call(request)?)
                    .await?
                    .into_inner(),
            );
        }
        AdminCommand::Retention {
            tenant_id,
            output_days,
            upload_days,
            event_days,
        } => {
            let request = pb::SetRetentionRequest {
                retention: Some(pb::Retention {
                    tenant_id: tenant_id.clone(),
                    output_days: *output_days,
                    upload_days: *upload_days,
                    event_days: *event_days,
                }),
            };
            let set = accounts
                .set_retention(api.admin_call(request)?)
                .await?
                .into_inner();
            let days = |d: u32| {
                if d == 0 {
                    "default".to_string()
                } else {
                    format!("{d} days")
                }
            };
            if as_json {
                print_json(&json!({
                    "tenant_id": set.tenant_id,
                    "output_days": set.output_days,
                    "upload_days": set.upload_days,
                    "event_days": set.event_days,
                }));
            } else {
                print_line(&format!(
                    "retention of {}: outputs {}, uploads {}, events {}",
                    set.tenant_id,
                    days(set.output_days),
                    days(set.upload_days),
                    days(set.event_days)
                ));
            }
        }
    }
    Ok(())
}

fn show(as_json: bool, account: &pb::Account) {
    if as_json {
        print_json(&json::account(account));
    } else {
        print_text(&human::account(account));
    }
}
