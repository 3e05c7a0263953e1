//! `account` and `ledger`: as the tenant key's account, or as admin with `--tenant`.

use atelier_proto::v1 as pb;

use crate::args::{AccountArgs, LedgerArgs};
use crate::client::Api;
use crate::error::UsageError;
use crate::render::{human, json, note, print_json, print_line, print_text};

/// `account`: balance, membership, active jobs.
pub async fn account(api: &Api, as_json: bool, args: &AccountArgs) -> anyhow::Result<()> {
    let request = pb::GetAccountRequest::default();
    let request = match &args.tenant {
        Some(tenant) => api.admin_call(pb::GetAccountRequest {
            tenant_id: tenant.clone(),
            account: admin_account(api)?,
        })?,
        None => api.call(request)?,
    };
    let account = api.accounts().get_account(request).await?.into_inner();
    if as_json {
        print_json(&json::account(&account));
    } else {
        print_text(&human::account(&account));
    }
    Ok(())
}

/// `ledger`: one page of grants, charges and refunds.
pub async fn ledger(api: &Api, as_json: bool, args: &LedgerArgs) -> anyhow::Result<()> {
    let mut request = pb::ListLedgerRequest {
        page_size: args.page_size.unwrap_or(0),
        page_token: args.page_token.clone().unwrap_or_default(),
        ..Default::default()
    };
    let request = match &args.tenant {
        Some(tenant) => {
            request.tenant_id = tenant.clone();
            request.account = admin_account(api)?;
            api.admin_call(request)?
        }
        None => api.call(request)?,
    };
    let page = api.accounts().list_ledger(request).await?.into_inner();
    if as_json {
        print_json(&json::ledger(&page));
        return Ok(());
    }
    if page.entries.is_empty() {
        note("no ledger entries");
    }
    for entry in &page.entries {
        print_line(&human::ledger_entry(entry));
    }
    if !page.next_page_token.is_empty() {
        note(&format!("more: --page-token {}", page.next_page_token));
    }
    Ok(())
}

fn admin_account(api: &Api) -> Result<String, UsageError> {
    api.account().map(str::to_string).ok_or_else(|| {
        UsageError("with --tenant, name the account with --account (ATELIER_ACCOUNT)".into())
    })
}
