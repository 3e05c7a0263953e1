//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers and types themselves.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::compat::{image_editor, task_api};
use crate::model::params::{
    BasicCleanParams, EditParams, GenerateParams, PoseSetParams, TransformParams,
};
use crate::routes::{events, jobs, meta, uploads};

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Atelier REST gateway",
        description = "Image jobs over HTTP/JSON. Authenticate with `Authorization: Bearer <api key>`; a tenant-wide key names the account with `X-Atelier-Account`. Errors are `{\"error\": {\"code\", \"reason\", \"message\", \"details\"}}`."
    ),
    paths(
        jobs::submit,
        jobs::list,
        jobs::get,
        jobs::cancel,
        jobs::logs,
        events::events,
        uploads::upload,
        meta::account,
        meta::models,
        meta::stats,
        meta::healthz,
        image_editor::submit,
        image_editor::result,
        image_editor::batch_submit,
        image_editor::batch_result,
        image_editor::status,
        task_api::create,
        task_api::get,
        task_api::list,
    ),
    components(schemas(TransformParams, BasicCleanParams, EditParams, GenerateParams, PoseSetParams)),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "Submit, follow and cancel image jobs"),
        (name = "uploads", description = "Source images sent with the request"),
        (name = "account", description = "Quota, models and statistics"),
        (name = "health", description = "Liveness"),
        (name = "compat-image-editor", description = "Drop-in routes of the replaced Django image-edit API"),
        (name = "compat-task-api", description = "Drop-in routes of the replaced Express task API"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Serves the document.
pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
