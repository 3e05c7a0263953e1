//! `/v1/webhooks`: register, list and delete webhook endpoints, and list their delivery attempts.
//! Endpoints belong to the key's tenant; an account-scoped key sees and manages only its account's.

use atelier_proto::v1 as pb;
use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::call::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{JsonBody, PathParam, QueryParams};
use crate::model::webhook::{
    CreateWebhookEndpoint, WebhookDeliveryList, WebhookEndpoint, WebhookEndpointList,
};
use crate::state::AppState;

/// Register an endpoint; the answer carries its signing secret, shown only this once.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "createWebhookEndpoint",
    tag = "webhooks",
    request_body = CreateWebhookEndpoint,
    params(("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as; the endpoint's account unless the body names one")),
    responses(
        (status = 200, description = "The endpoint, with its secret", body = WebhookEndpoint,
         links(
             ("DeleteWebhookEndpoint" = (operation_id = "deleteWebhookEndpoint", parameters(("id" = "$response.body#/id")))),
             ("ListEndpointDeliveries" = (operation_id = "listEndpointDeliveries", parameters(("id" = "$response.body#/id")))),
         )),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<CreateWebhookEndpoint>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let request = body.into_pb(caller.account());
    let endpoint = state
        .accounts
        .clone()
        .create_webhook_endpoint(caller.request(request))
        .await?
        .into_inner();
    Ok(Json(WebhookEndpoint::from(&endpoint)))
}

/// List the endpoints; for a tenant-wide key the first, with a null `url`, signs the deliveries to
/// jobs' own `callback_url` and shows its secret.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "listWebhookEndpoints",
    tag = "webhooks",
    params(("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as")),
    responses(
        (status = 200, description = "The endpoints", body = WebhookEndpointList),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<Json<WebhookEndpointList>> {
    let list = state
        .accounts
        .clone()
        .list_webhook_endpoints(caller.request(pb::ListWebhookEndpointsRequest {}))
        .await?
        .into_inner();
    Ok(Json(WebhookEndpointList::from(&list)))
}

/// Delete an endpoint: nothing more is sent to it, pending deliveries are given up.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "deleteWebhookEndpoint",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "The deleted endpoint", body = WebhookEndpoint),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
) -> ApiResult<Json<WebhookEndpoint>> {
    let endpoint = state
        .accounts
        .clone()
        .delete_webhook_endpoint(
            caller.request(pb::DeleteWebhookEndpointRequest { endpoint_id: id }),
        )
        .await?
        .into_inner();
    Ok(Json(WebhookEndpoint::from(&endpoint)))
}

/// Filters and paging of the delivery lists.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Only attempts of this job's events.
    pub job_id: Option<String>,
    /// 1..=100; default 50.
    pub page_size: Option<u32>,
    /// The `next_page_token` of the previous page.
    pub page_token: Option<String>,
}

/// `GET /v1/webhooks/deliveries` also filters by endpoint.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EndpointFilter {
    /// Only attempts of this endpoint.
    pub endpoint_id: Option<String>,
}

async fn deliveries(
    state: &AppState,
    caller: &Caller,
    endpoint_id: Option<String>,
    query: DeliveriesQuery,
) -> ApiResult<Json<WebhookDeliveryList>> {
    let page = state
        .accounts
        .clone()
        .list_webhook_deliveries(caller.request(pb::ListWebhookDeliveriesRequest {
            endpoint_id: endpoint_id.unwrap_or_default(),
            job_id: query.job_id.unwrap_or_default(),
            page_size: query.page_size.unwrap_or(0),
            page_token: query.page_token.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    Ok(Json(WebhookDeliveryList::from(&page)))
}

/// Every delivery attempt of one endpoint, oldest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    operation_id = "listEndpointDeliveries",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "The endpoint id"),
        DeliveriesQuery,
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "A page of delivery attempts", body = WebhookDeliveryList),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn endpoint_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    PathParam(id): PathParam<String>,
    QueryParams(query): QueryParams<DeliveriesQuery>,
) -> ApiResult<Json<WebhookDeliveryList>> {
    deliveries(&state, &caller, Some(id), query).await
}

/// Every delivery attempt of the caller's endpoints (and jobs' callback URLs), oldest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/deliveries",
    operation_id = "listWebhookDeliveries",
    tag = "webhooks",
    params(
        EndpointFilter,
        DeliveriesQuery,
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "A page of delivery attempts", body = WebhookDeliveryList),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn all_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(filter): QueryParams<EndpointFilter>,
    QueryParams(query): QueryParams<DeliveriesQuery>,
) -> ApiResult<Json<WebhookDeliveryList>> {
    deliveries(&state, &caller, filter.endpoint_id, query).await
}
