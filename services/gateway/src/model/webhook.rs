//! Webhook endpoints and delivery attempts as REST JSON.

use atelier_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::time;

fn some_text(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// Which events an endpoint receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    /// The job's end: `job.succeeded`, `job.partially_succeeded`, `job.failed`, `job.cancelled`.
    Terminal,
    /// Every `task.progress` event of the job's tasks.
    Progress,
}

impl WebhookEvent {
    fn name(self) -> &'static str {
        match self {
            Self::Terminal => "terminal",
            Self::Progress => "progress",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        match name {
            "terminal" => Some(Self::Terminal),
            "progress" => Some(Self::Progress),
            _ => None,
        }
    }
}

/// `POST /v1/webhooks`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "url": "https://shop.example/hooks/atelier",
    "events": ["terminal", "progress"]
}))]
pub struct CreateWebhookEndpoint {
    /// The receiver, an http(s) URL; private addresses only where the orchestrator allows them.
    pub url: String,
    /// The account whose jobs are delivered; default: the `X-Atelier-Account` the call acts as, and
    /// without it the whole tenant.
    #[serde(default)]
    pub account: Option<String>,
    /// Default `["terminal"]`.
    #[serde(default)]
    pub events: Vec<WebhookEvent>,
}

impl CreateWebhookEndpoint {
    /// The gRPC request; `acting_as` is the call's `X-Atelier-Account`.
    pub fn into_pb(self, acting_as: Option<&str>) -> pb::CreateWebhookEndpointRequest {
        pb::CreateWebhookEndpointRequest {
            url: self.url,
            account: self
                .account
                .or_else(|| acting_as.map(str::to_string))
                .unwrap_or_default(),
            events: self.events.iter().map(|e| e.name().to_string()).collect(),
        }
    }
}

/// A registered receiver of signed event deliveries.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: String,
    pub tenant_id: String,
    /// Null for an endpoint of the whole tenant.
    pub account: Option<String>,
    /// Null for the endpoint that signs deliveries to jobs' own `callback_url`.
    pub url: Option<String>,
    /// The signing secret: only in the answer that created the endpoint (and on the callback
    /// endpoint, for a tenant-wide key); null otherwise.
    pub secret: Option<String>,
    pub events: Vec<WebhookEvent>,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
}

impl From<&pb::WebhookEndpoint> for WebhookEndpoint {
    fn from(e: &pb::WebhookEndpoint) -> Self {
        Self {
            id: e.id.clone(),
            tenant_id: e.tenant_id.clone(),
            account: some_text(&e.account),
            url: some_text(&e.url),
            secret: some_text(&e.secret),
            events: e
                .events
                .iter()
                .filter_map(|n| WebhookEvent::parse(n))
                .collect(),
            created_at: time::to_text(e.created_at.as_ref()),
        }
    }
}

/// The caller's endpoints.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookEndpointList {
    pub endpoints: Vec<WebhookEndpoint>,
}

impl From<&pb::ListWebhookEndpointsResponse> for WebhookEndpointList {
    fn from(list: &pb::ListWebhookEndpointsResponse) -> Self {
        Self {
            endpoints: list.endpoints.iter().map(WebhookEndpoint::from).collect(),
        }
    }
}

/// One attempt to deliver one event to one endpoint.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: String,
    pub endpoint_id: String,
    /// The event's id, sent as `Atelier-Event-Id`.
    pub event_id: String,
    pub job_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The receiver's HTTP status; null when the call failed before an answer.
    pub status: Option<u32>,
    /// Why the attempt failed; null when it was delivered.
    pub error: Option<String>,
    /// Answered 2xx: never sent again.
    pub delivered: bool,
    #[schema(format = DateTime)]
    pub attempted_at: Option<String>,
    /// When the next attempt is due; null when delivered or given up.
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
}

/// A page of delivery attempts, oldest first.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WebhookDeliveryList {
    pub deliveries: Vec<WebhookDelivery>,
    pub next_page_token: Option<String>,
}

impl From<&pb::ListWebhookDeliveriesResponse> for WebhookDeliveryList {
    fn from(page: &pb::ListWebhookDeliveriesResponse) -> Self {
        Self {
            deliveries: page
                .deliveries
                .iter()
                .map(|d| WebhookDelivery {
                    id: d.id.clone(),
                    endpoint_id: d.endpoint_id.clone(),
                    event_id: d.event_id.clone(),
                    job_id: d.job_id.clone(),
                    attempt: d.attempt,
                    status: (d.status != 0).then_some(d.status),
                    error: some_text(&d.error),
                    delivered: d.delivered,
                    attempted_at: time::to_text(d.attempted_at.as_ref()),
                    next_attempt_at: time::to_text(d.next_attempt_at.as_ref()),
                })
                .collect(),
            next_page_token: some_text(&page.next_page_token),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_defaults_to_the_one_the_call_acts_as() {
        let body: CreateWebhookEndpoint =
            serde_json::from_value(serde_json::json!({"url": "https://h/x"})).expect("body");
        let request = body.clone().into_pb(Some("alice"));
        assert_eq!(request.account, "alice");
        assert!(request.events.is_empty());
        assert_eq!(body.into_pb(None).account, "");
        let body: CreateWebhookEndpoint = serde_json::from_value(serde_json::json!({
            "url": "https://h/x", "account": "bob", "events": ["progress"]
        }))
        .expect("body");
        let request = body.into_pb(Some("alice"));
        assert_eq!(request.account, "bob");
        assert_eq!(request.events, ["progress"]);
        assert!(serde_json::from_value::<CreateWebhookEndpoint>(
            serde_json::json!({"url": "https://h/x", "events": ["everything"]})
        )
        .is_err());
    }

    #[test]
    fn network_errors_have_no_status() {
        let page = pb::ListWebhookDeliveriesResponse {
            deliveries: vec![pb::WebhookDelivery {
                status: 0,
                error: "connection refused".into(),
                ..Default::default()
            }],
            next_page_token: String::new(),
        };
        let list = WebhookDeliveryList::from(&page);
        assert_eq!(list.deliveries[0].status, None);
        assert_eq!(
            list.deliveries[0].error.as_deref(),
            Some("connection refused")
        );
        assert_eq!(list.next_page_token, None);
    }
}
