//! `webhooks …`: register, list and delete webhook endpoints, and list their delivery attempts.
//! They belong to the key's tenant; an account-scoped key sees and manages only its account's.

use atelier_proto::v1 as pb;

use crate::args::{DeliveriesArgs, WebhookCommand};
use crate::client::Api;
use crate::render::{human, json, note, print_json, print_line};

/// Runs one webhooks command.
pub async fn run(api: &Api, as_json: bool, command: &WebhookCommand) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Create { url, events } => create(api, as_json, url, events).await,
        WebhookCommand::List => list(api, as_json).await,
        WebhookCommand::Delete { target } => delete(api, as_json, target).await,
        WebhookCommand::Deliveries(args) => deliveries(api, as_json, args).await,
    }
}

/// Prints the secret on stdout (as `admin create-key` does), what was made on stderr.
async fn create(
    api: &Api,
    as_json: bool,
    url: &str,
    events: &[crate::args::WebhookEventArg],
) -> anyhow::Result<()> {
    let request = pb::CreateWebhookEndpointRequest {
        url: url.to_string(),
        // With a tenant-wide key, --account makes the endpoint that account's.
        account: api.account().unwrap_or_default().to_string(),
        events: events.iter().map(|e| e.name().to_string()).collect(),
    };
    let endpoint = api
        .accounts()
        .create_webhook_endpoint(api.call(request)?)
        .await?
        .into_inner();
    if as_json {
        print_json(&json::webhook_endpoint(&endpoint));
    } else {
        note(&human::webhook_created(&endpoint));
        print_line(&endpoint.secret);
    }
    Ok(())
}

async fn endpoints(api: &Api) -> anyhow::Result<pb::ListWebhookEndpointsResponse> {
    Ok(api
        .accounts()
        .list_webhook_endpoints(api.call(pb::ListWebhookEndpointsRequest {})?)
        .await?
        .into_inner())
}

async fn list(api: &Api, as_json: bool) -> anyhow::Result<()> {
    let list = endpoints(api).await?;
    if as_json {
        print_json(&json::webhook_endpoints(&list));
        return Ok(());
    }
    if list.endpoints.is_empty() {
        note("no webhook endpoints");
    }
    for endpoint in &list.endpoints {
        print_line(&human::webhook_endpoint(endpoint));
    }
    Ok(())
}

/// Deletes by id, or every endpoint whose URL is exactly the one given.
async fn delete(api: &Api, as_json: bool, endpoint: &str) -> anyhow::Result<()> {
    let ids: Vec<String> = if endpoint.starts_with("http://") || endpoint.starts_with("https://") {
        let matching: Vec<String> = endpoints(api)
            .await?
            .endpoints
            .into_iter()
            .filter(|e| e.url == endpoint)
            .map(|e| e.id)
            .collect();
        anyhow::ensure!(
            !matching.is_empty(),
            "no webhook endpoint of yours has the URL {endpoint} (`atelier webhooks list`)"
        );
        matching
    } else {
        vec![endpoint.to_string()]
    };
    for id in ids {
        let deleted = api
            .accounts()
            .delete_webhook_endpoint(
                api.call(pb::DeleteWebhookEndpointRequest { endpoint_id: id })?,
            )
            .await?
            .into_inner();
        if as_json {
            print_json(&json::webhook_endpoint(&deleted));
        } else {
            print_line(&format!(
                "webhook endpoint {} deleted ({})",
                deleted.id, deleted.url
            ));
        }
    }
    Ok(())
}

async fn deliveries(api: &Api, as_json: bool, args: &DeliveriesArgs) -> anyhow::Result<()> {
    let request = pb::ListWebhookDeliveriesRequest {
        endpoint_id: args.endpoint_id.clone().unwrap_or_default(),
        job_id: args.job.clone().unwrap_or_default(),
        page_size: args.page_size.unwrap_or(0),
        page_token: args.page_token.clone().unwrap_or_default(),
    };
    let page = api
        .accounts()
        .list_webhook_deliveries(api.call(request)?)
        .await?
        .into_inner();
    if as_json {
        print_json(&json::webhook_deliveries(&page));
        return Ok(());
    }
    if page.deliveries.is_empty() {
        note("no delivery attempts yet");
    }
    for delivery in &page.deliveries {
        print_line(&human::webhook_delivery(delivery));
    }
    if !page.next_page_token.is_empty() {
        note(&format!("more: --page-token {}", page.next_page_token));
    }
    Ok(())
}
