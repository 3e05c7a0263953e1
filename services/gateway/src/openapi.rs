//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the handlers and types themselves.

use std::sync::OnceLock;

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::compat::image_studio::{self, proxy};
use crate::compat::{generator, image_edit, image_editor, task_api};
use crate::model::params::{
    BasicCleanParams, EditParams, GenerateParams, PoseSetParams, TransformParams,
};
use crate::routes::{events, files, jobs, meta, uploads, webhooks};

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
        jobs::delete,
        jobs::logs,
        events::events,
        uploads::upload,
        uploads::delete,
        webhooks::create,
        webhooks::list,
        webhooks::delete,
        webhooks::endpoint_deliveries,
        webhooks::all_deliveries,
        meta::account,
        meta::ledger,
        meta::models,
        meta::stats,
        meta::healthz,
        files::get_file,
        image_editor::submit,
        image_editor::result,
        image_editor::batch_submit,
        image_editor::batch_result,
        image_editor::status,
        task_api::create,
        task_api::get,
        task_api::list,
        task_api::update_status,
        image_edit::submit,
        image_edit::task,
        image_edit::statistics,
        generator::generate,
        generator::task,
        generator::delete_task,
        generator::delete_history,
        generator::tasks,
        generator::history,
        generator::image,
        generator::thumbnail,
        generator::models,
        generator::info,
        generator::health,
        image_studio::list_folders,
        image_studio::create_folder,
        image_studio::list_pairs,
        image_studio::upload,
        image_studio::submit_job,
        image_studio::list_jobs,
        image_studio::get_job,
        image_studio::cancel_job,
        image_studio::job_logs,
        image_studio::get_settings,
        image_studio::set_settings,
        image_studio::list_prompt_groups,
        image_studio::save_prompt_group,
        image_studio::set_active_prompt_group,
        image_studio::review_one,
        image_studio::review_batch,
        image_studio::archive,
        image_studio::activate,
        image_studio::delete_files,
        proxy::proxy_post,
        proxy::proxy_get,
    ),
    components(schemas(TransformParams, BasicCleanParams, EditParams, GenerateParams, PoseSetParams)),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "Submit, follow and cancel image jobs"),
        (name = "uploads", description = "Source images sent with the request"),
        (name = "webhooks", description = "Signed deliveries of job events to your endpoints"),
        (name = "account", description = "Quota, models and statistics"),
        (name = "health", description = "Liveness"),
        (name = "files", description = "Result files behind signed, expiring links (local storage)"),
        (name = "compat-image-editor", description = "Drop-in routes of the replaced Django image-edit API"),
        (name = "compat-task-api", description = "Drop-in routes of the replaced Express task API"),
        (name = "compat-generator", description = "Drop-in routes of the replaced FastAPI image generator"),
        (name = "compat-image-edit", description = "Drop-in routes of the replaced FastAPI image-edit service"),
        (name = "compat-image-studio", description = "ImageStudio's front-end routes: SKU folders, image pairs, studio jobs, review, archive, prompt groups, settings"),
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

/// The document as JSON, built once.
pub fn document() -> &'static serde_json::Value {
    static DOCUMENT: OnceLock<serde_json::Value> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        fix_link_keys(&mut doc);
        describe_event_stream(&mut doc);
        doc
    })
}

/// utoipa 5.5 writes a link's `operationId` as `operation_id`; OpenAPI readers (schemathesis among them)
/// need the spec's spelling.
fn fix_link_keys(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::Object(links)) = map.get_mut("links") {
                for link in links.values_mut() {
                    if let serde_json::Value::Object(link) = link {
                        for (wrong, right) in [
                            ("operation_id", "operationId"),
                            ("operation_ref", "operationRef"),
                            ("request_body", "requestBody"),
                        ] {
                            if let Some(v) = link.remove(wrong) {
                                link.insert(right.to_string(), v);
                            }
                        }
                    }
                }
            }
            map.values_mut().for_each(fix_link_keys);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(fix_link_keys),
        _ => {}
    }
}

/// An event stream's schema describes each message (`event`, `id`, `data`), as OpenAPI 3.2's
/// `itemSchema` does; the `data` is JSON of a JobEvent (or an ErrorBody for `event: error`).
fn describe_event_stream(doc: &mut serde_json::Value) {
    let content = &mut doc["paths"]["/v1/jobs/{id}/events"]["get"]["responses"]["200"]["content"]
        ["text/event-stream"];
    if content.is_object() {
        content["schema"] = serde_json::json!({
            "type": "object",
            "description": "One Server-Sent Event. `id` is the event's sequence (send it back as Last-Event-ID to resume); keep-alive comments carry no event.",
            "required": ["data"],
            "properties": {
                "event": {
                    "type": "string",
                    "enum": ["job_state", "task_state", "progress", "log", "output", "queue", "source_fetched", "unknown", "error"]
                },
                "id": {"type": "string", "pattern": "^[0-9]+$"},
                "retry": {"type": "integer"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/JobEvent"},
                            {"$ref": "#/components/schemas/ErrorBody"}
                        ]
                    }
                }
            }
        });
    }
}

/// Serves the document.
pub async fn serve() -> Json<&'static serde_json::Value> {
    Json(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_a_unique_id_and_the_document_is_3_1() {
        let doc = document();
        assert!(doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")));
        let mut ids = std::collections::HashSet::new();
        for (_, item) in doc["paths"].as_object().expect("paths") {
            for (_, op) in item.as_object().expect("path item") {
                let id = op["operationId"].as_str().expect("operationId").to_string();
                assert!(ids.insert(id.clone()), "duplicate operationId {id}");
            }
        }
        assert_eq!(ids.len(), 64);
        for id in ["deleteJob", "deleteUpload", "getFile", "taskUpdateStatus"] {
            assert!(ids.contains(id), "{id}");
        }
        let link = &doc["paths"]["/v1/jobs"]["post"]["responses"]["200"]["links"]["GetJob"];
        assert_eq!(link["operationId"], "getJob");
        assert!(link.get("operation_id").is_none());
    }
}
