//! The router: every route of `/v1`, the compatibility families (each with its own authentication
//! settings), the OpenAPI document and the fallbacks, over the shared [`AppState`].

use atelier_codes::ErrorCode;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{delete, get, post};
use axum::{Extension, Json, Router};

use crate::compat;
use crate::compat::jwt::CompatAuth;
use crate::error::ApiError;
use crate::openapi;
use crate::routes::{console, events, files, jobs, meta, uploads, webhooks};
use crate::state::AppState;

/// Every route, without the outer layers (request ids, CORS). Each compatibility family carries its
/// own authentication settings (`auth`): the replaced systems' bearer JWTs and, where its seed had
/// none, callers without a key.
pub fn router(state: AppState, auth: &CompatAuth) -> Router {
    let json_limit = DefaultBodyLimit::max(state.limits.max_json_bytes);
    let family = |name: &str, routes: Router<AppState>| match auth.family(name) {
        Some(settings) => routes.layer(Extension(settings)),
        None => routes,
    };
    let compat = Router::new()
        .merge(family(
            "generator",
            compat::generator::router(state.limits.generator_per_minute),
        ))
        .merge(family("image_editor", compat::image_editor::router()))
        .merge(family(
            "image_edit",
            compat::image_edit::router().layer(DefaultBodyLimit::disable()),
        ))
        .merge(family("task_api", compat::task_api::router()))
        .merge(family(
            "image_studio",
            // The upload route streams and caps each file itself.
            compat::image_studio::router().layer(DefaultBodyLimit::disable()),
        ));
    Router::new()
        .route("/v1/jobs", post(jobs::submit).get(jobs::list))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::delete))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel))
        .route("/v1/jobs/{id}/events", get(events::events))
        .route("/v1/jobs/{id}/logs", get(jobs::logs))
        .route(
            "/v1/uploads",
            // The upload counts its own bytes while streaming; no buffering limit applies.
            post(uploads::upload).layer(DefaultBodyLimit::disable()),
        )
        .route("/v1/uploads/{id}", delete(uploads::delete))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route("/v1/webhooks/deliveries", get(webhooks::all_deliveries))
        .route("/v1/webhooks/{id}", delete(webhooks::delete))
        .route(
            "/v1/webhooks/{id}/deliveries",
            get(webhooks::endpoint_deliveries),
        )
        .route("/v1/account", get(meta::account))
        .route("/v1/account/ledger", get(meta::ledger))
        .route("/v1/models", get(meta::models))
        .route("/v1/stats", get(meta::stats))
        .route("/v1/files/{token}", get(files::get_file))
        .route("/healthz", get(meta::healthz))
        .route("/openapi.json", get(openapi::serve))
        .merge(compat)
        .merge(console::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(json_limit)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such route; see /openapi.json")
}

async fn method_not_allowed() -> (StatusCode, Json<crate::error::ErrorBody>) {
    let err = ApiError::bad_request("this route does not take that method; see /openapi.json");
    (StatusCode::METHOD_NOT_ALLOWED, Json(err.body()))
}
