//! ComfyUI workflows on RunningHub.
//!
//! The source image is uploaded first (`POST {base}/task/openapi/upload`, multipart `apiKey`,
//! `fileType`, `file`; answers `data.fileName`), then the run is created (`POST
//! {base}/task/openapi/create` with `apiKey`, `workflowId` and `nodeInfoList` of `{nodeId,
//! fieldName, fieldValue}` for the configured image, prompt and seed inputs), `POST
//! {base}/task/openapi/status` is polled until `SUCCESS` or `FAILED`, and `POST
//! {base}/task/openapi/outputs` lists the `fileUrl`s. Every answer is `{"code": 0, "msg", "data"}`;
//! a non-zero code is an error named in `msg`.

use atelier_engine::Format;
use reqwest::header::CONTENT_TYPE;
use serde_json::{json, Value};

use super::ark::{snippet, with_request_id};
use super::config::NodeField;
use super::openai::{Answer, ImageCall, Provider, ProviderImage};
use super::ProviderError;

fn node(field: &NodeField, value: Value) -> Value {
    json!({"nodeId": field.node_id, "fieldName": field.field_name, "fieldValue": value})
}

impl Provider {
    /// One workflow run of configured model `id`.
    pub(super) async fn runninghub(
        &self,
        call: &ImageCall<'_>,
        id: &str,
    ) -> Result<Answer, ProviderError> {
        let flow = self.workflow(id).ok_or_else(|| ProviderError::Setup {
            provider: self.name.clone(),
            message: format!("no workflow configured for model `{id}`"),
        })?;
        let key = self
            .api_key
            .as_ref()
            .map(|k| k.expose())
            .unwrap_or_default();
        let mut nodes = Vec::new();
        if let (Some(field), Some((image, format))) = (&flow.image_node, call.image) {
            let file_name = self.runninghub_upload(key, image, format).await?;
            nodes.push(node(field, Value::from(file_name)));
        }
        if let Some(field) = &flow.prompt_node {
            nodes.push(node(field, Value::from(call.prompt)));
        }
        if let (Some(field), Some(seed)) = (&flow.seed_node, call.seed) {
            nodes.push(node(field, Value::from(seed)));
        }
        let created = self
            .runninghub_call(
                "create",
                &json!({"apiKey": key, "workflowId": flow.workflow_id, "nodeInfoList": nodes}),
                None,
            )
            .await?;
        let task_id = created
            .get("taskId")
            .and_then(|t| {
                t.as_str()
                    .map(str::to_string)
                    .or_else(|| t.as_i64().map(|n| n.to_string()))
            })
            .ok_or_else(|| ProviderError::BadResponse {
                provider: self.name.clone(),
                message: "no data.taskId in the answer".into(),
            })?;
        tracing::info!(provider = %self.name, task_id, "RunningHub task created");
        let ask = json!({"apiKey": key, "taskId": task_id});
        loop {
            let status = self.runninghub_call("status", &ask, Some(&task_id)).await?;
            match status.as_str().unwrap_or_default() {
                "SUCCESS" => break,
                "FAILED" => {
                    let outputs = self.runninghub_call("outputs", &ask, Some(&task_id)).await;
                    let reason = outputs
                        .ok()
                        .and_then(|o| o.get("failedReason").cloned())
                        .map(|r| r.to_string())
                        .unwrap_or_else(|| "the workflow run failed".into());
                    return Err(ProviderError::Server {
                        provider: self.name.clone(),
                        status: 500,
                        message: with_request_id("", &reason, Some(&task_id)),
                    });
                }
                _ => tokio::time::sleep(self.poll_interval).await,
            }
        }
        let outputs = self
            .runninghub_call("outputs", &ask, Some(&task_id))
            .await?;
        let images: Vec<ProviderImage> = outputs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.get("fileUrl").and_then(Value::as_str))
            .map(|url| ProviderImage::Url(url.to_string()))
            .collect();
        if images.is_empty() {
            return Err(ProviderError::BadResponse {
                provider: self.name.clone(),
                message: with_request_id("", "the run listed no outputs", Some(&task_id)),
            });
        }
        Ok(Answer {
            images,
            request_id: Some(task_id),
        })
    }

    async fn runninghub_upload(
        &self,
        key: &str,
        image: &[u8],
        format: Format,
    ) -> Result<String, ProviderError> {
        let boundary = format!("atelier-{}", uuid::Uuid::new_v4().simple());
        let mut body = Vec::with_capacity(image.len() + 512);
        for (name, value) in [("apiKey", key), ("fileType", "image")] {
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                )
                .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"source.{}\"\r\nContent-Type: {}\r\n\r\n",
                format.extension(),
                format.content_type()
            )
            .as_bytes(),
        );
        body.extend_from_slice(image);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let request = self
            .client
            .post(format!("{}/task/openapi/upload", self.base_url))
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body);
        let data = self.runninghub_answer(request, None).await?;
        data.get("fileName")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ProviderError::BadResponse {
                provider: self.name.clone(),
                message: "the upload answer has no data.fileName".into(),
            })
    }

    async fn runninghub_call(
        &self,
        call: &str,
        body: &Value,
        task_id: Option<&str>,
    ) -> Result<Value, ProviderError> {
        let request = self
            .client
            .post(format!("{}/task/openapi/{call}", self.base_url))
            .json(body);
        self.runninghub_answer(request, task_id).await
    }

    /// The `data` of a `{"code": 0, "msg", "data"}` answer; other codes become failures.
    async fn runninghub_answer(
        &self,
        request: reqwest::RequestBuilder,
        task_id: Option<&str>,
    ) -> Result<Value, ProviderError> {
        let response = request.send().await.map_err(|e| self.network(&e))?;
        let status = response.status().as_u16();
        let body = self.read_capped(response).await?;
        let value: Option<Value> = serde_json::from_slice(&body).ok();
        let provider = self.name.clone();
        let Some(value) = value else {
            let message = snippet(&body);
            return Err(if status >= 500 || status == 429 {
                ProviderError::Server {
                    provider,
                    status,
                    message,
                }
            } else {
                ProviderError::BadResponse { provider, message }
            });
        };
        let code = value.get("code").and_then(Value::as_i64).unwrap_or(-1);
        if code == 0 && (200..300).contains(&status) {
            return Ok(value.get("data").cloned().unwrap_or(Value::Null));
        }
        let msg = value
            .get("msg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let message = with_request_id(&code.to_string(), &msg, task_id);
        let upper = msg.to_ascii_uppercase();
        Err(
            if upper.contains("TOKEN_INVALID") || upper.contains("APIKEY_INVALID") || status == 401
            {
                ProviderError::KeyRejected { provider, message }
            } else if upper.contains("QUEUE_MAXED")
                || upper.contains("INSTANCE_MAXED")
                || upper.contains("TASK_IS_RUNNING")
                || upper.contains("TASK_IS_QUEUED")
                || status == 429
            {
                ProviderError::RateLimited {
                    provider,
                    message,
                    retry_after: None,
                }
            } else if upper.contains("NOT_ENOUGH") || upper.contains("BALANCE") {
                ProviderError::OutOfCredits { provider, message }
            } else if upper.contains("PARAMS_INVALID") || upper.contains("VALIDATE_PROMPT") {
                ProviderError::InvalidRequest { provider, message }
            } else if upper.contains("SENSITIVE") || upper.contains("AUDIT") {
                ProviderError::Refused { provider, message }
            } else if status >= 500 {
                ProviderError::Server {
                    provider,
                    status,
                    message,
                }
            } else {
                ProviderError::Rejected {
                    provider,
                    status,
                    message,
                }
            },
        )
    }
}
