//! The account, the models on offer, statistics and health.

use std::time::Duration;

use atelier_proto::v1 as pb;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::HealthCheckRequest;
use utoipa::IntoParams;

use crate::call::Caller;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::QueryParams;
use crate::model::other::{Account, Health, Ledger, ModelList, Stats};
use crate::model::time;
use crate::state::AppState;

/// The calling account: balance, membership, active jobs.
#[utoipa::path(
    get,
    path = "/v1/account",
    operation_id = "getAccount",
    tag = "account",
    params(("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as")),
    responses(
        (status = 200, description = "The account", body = Account),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn account(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Account>> {
    let account = state
        .accounts
        .clone()
        .get_account(caller.request(pb::GetAccountRequest::default()))
        .await?
        .into_inner();
    Ok(Json(Account::from(&account)))
}

/// The models the processors offer, and the kinds each serves.
#[utoipa::path(
    get,
    path = "/v1/models",
    operation_id = "listModels",
    tag = "account",
    params(("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as")),
    responses(
        (status = 200, description = "The models", body = ModelList),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn models(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<ModelList>> {
    let models = state
        .jobs
        .clone()
        .list_models(caller.request(pb::ListModelsRequest {}))
        .await?
        .into_inner();
    Ok(Json(ModelList::from(&models)))
}

/// Range of `GET /v1/stats`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsQuery {
    /// Jobs created at or after this RFC 3339 time.
    #[param(format = DateTime)]
    pub created_gte: Option<String>,
    /// Jobs created before this RFC 3339 time.
    #[param(format = DateTime)]
    pub created_lt: Option<String>,
}

/// Totals by state and kind, completion, failure and cache-hit rates, mean and p95 durations, and
/// upstream provider usage (calls, images, failures, seconds) per provider and model.
#[utoipa::path(
    get,
    path = "/v1/stats",
    operation_id = "getStats",
    tag = "account",
    params(
        StatsQuery,
        ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as"),
    ),
    responses(
        (status = 200, description = "Statistics of the caller's jobs", body = Stats),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stats(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<StatsQuery>,
) -> ApiResult<Json<Stats>> {
    let start = query
        .created_gte
        .as_deref()
        .map(|t| time::parse("created_gte", t))
        .transpose()?;
    let end = query
        .created_lt
        .as_deref()
        .map(|t| time::parse("created_lt", t))
        .transpose()?;
    let range = (start.is_some() || end.is_some()).then_some(pb::TimeRange { start, end });
    let stats = state
        .jobs
        .clone()
        .get_stats(caller.request(pb::GetStatsRequest { range }))
        .await?
        .into_inner();
    Ok(Json(Stats::from(&stats)))
}

/// Whether the orchestrator behind the gateway serves (its gRPC health).
pub async fn orchestrator_health(state: &AppState) -> &'static str {
    let mut health = state.health.clone();
    let check = health.check(HealthCheckRequest {
        service: String::new(),
    });
    match tokio::time::timeout(Duration::from_secs(2), check).await {
        Ok(Ok(answer)) if answer.get_ref().status == ServingStatus::Serving as i32 => "serving",
        Ok(Ok(_)) => "not_serving",
        _ => "unreachable",
    }
}

/// 200 when the gateway and its orchestrator serve, 503 otherwise. Needs no key.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "health",
    responses(
        (status = 200, description = "Serving", body = Health),
        (status = 503, description = "The orchestrator does not serve", body = Health),
    )
)]
pub async fn healthz(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let orchestrator = orchestrator_health(&state).await;
    let (status, word) = if orchestrator == "serving" {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    };
    (
        status,
        Json(Health {
            status: word.to_string(),
            orchestrator: orchestrator.to_string(),
        }),
    )
}

/// Query of the ledger.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LedgerQuery {
    /// 1..=500, default 50.
    #[param(minimum = 1, maximum = 500)]
    pub page_size: Option<u32>,
    /// From the previous page's `next_page_token`.
    pub page_token: Option<String>,
}

/// The calling account's ledger, newest first: grants, charges and refunds.
#[utoipa::path(
    get,
    path = "/v1/account/ledger",
    operation_id = "listLedger",
    tag = "account",
    params(LedgerQuery, ("X-Atelier-Account" = Option<String>, Header, description = "The account a tenant-wide key acts as")),
    responses(
        (status = 200, description = "One page of the ledger", body = Ledger),
        (status = "default", description = "An error", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn ledger(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<LedgerQuery>,
) -> ApiResult<Json<Ledger>> {
    let page = state
        .accounts
        .clone()
        .list_ledger(caller.request(pb::ListLedgerRequest {
            page_size: query.page_size.unwrap_or(0),
            page_token: query.page_token.unwrap_or_default(),
            ..Default::default()
        }))
        .await?
        .into_inner();
    Ok(Json(Ledger::from(&page)))
}
