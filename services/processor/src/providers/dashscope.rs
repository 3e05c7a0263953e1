//! Alibaba DashScope (Model Studio).
//!
//! Synchronous models (`qwen-image-edit*`, `qwen-image*`): `POST
//! {base}/api/v1/services/aigc/multimodal-generation/generation` with `input.messages[0].content` =
//! `[{image}, {text}]` and `parameters` {n, negative_prompt, size `W*H`, seed, watermark,
//! prompt_extend}; the answer's `output.choices[].message.content[].image` are URLs.
//!
//! Asynchronous models (configured in `async_models`): `POST
//! {base}/api/v1/services/aigc/text2image/image-synthesis` (generate) or
//! `…/image2image/image-synthesis` (edit, pose_set) with `X-DashScope-Async: enable` answers a
//! `task_id`; `GET {base}/api/v1/tasks/{task_id}` is polled until `output.task_status` is SUCCEEDED
//! (`output.results[].url`) or FAILED.
//!
//! Errors are `{"request_id", "code", "message"}`.

use serde_json::{json, Value};

use super::ark::{data_uri, snippet, with_request_id};
use super::openai::{Answer, ImageCall, Provider, ProviderImage};
use super::ProviderError;

/// The synchronous multimodal endpoint.
pub const SYNC_PATH: &str = "/api/v1/services/aigc/multimodal-generation/generation";
/// The asynchronous text-to-image endpoint.
pub const TEXT2IMAGE_PATH: &str = "/api/v1/services/aigc/text2image/image-synthesis";
/// The asynchronous image-to-image endpoint.
pub const IMAGE2IMAGE_PATH: &str = "/api/v1/services/aigc/image2image/image-synthesis";

fn parameters(call: &ImageCall<'_>) -> Value {
    let mut parameters = json!({
        "n": call.n.max(1),
        "watermark": false,
        "prompt_extend": false,
    });
    if !call.negative_prompt.is_empty() {
        parameters["negative_prompt"] = Value::from(call.negative_prompt);
    }
    if let Some((w, h)) = call.size {
        parameters["size"] = Value::from(format!("{w}*{h}"));
    }
    if let Some(seed) = call.seed {
        parameters["seed"] = Value::from(seed);
    }
    parameters
}

/// The body of a synchronous call.
pub(super) fn sync_body(call: &ImageCall<'_>) -> Value {
    let mut content = Vec::new();
    if let Some((image, format)) = call.image {
        content.push(json!({"image": data_uri(image, format.content_type())}));
    }
    content.push(json!({"text": call.prompt}));
    json!({
        "model": call.model,
        "input": {"messages": [{"role": "user", "content": content}]},
        "parameters": parameters(call),
    })
}

/// The path and body of an asynchronous task.
pub(super) fn async_request(call: &ImageCall<'_>) -> (&'static str, Value) {
    match call.image {
        None => {
            let mut input = json!({"prompt": call.prompt});
            if !call.negative_prompt.is_empty() {
                input["negative_prompt"] = Value::from(call.negative_prompt);
            }
            let mut parameters = parameters(call);
            if let Some(p) = parameters.as_object_mut() {
                p.remove("negative_prompt");
            }
            (
                TEXT2IMAGE_PATH,
                json!({"model": call.model, "input": input, "parameters": parameters}),
            )
        }
        Some((image, format)) => (
            IMAGE2IMAGE_PATH,
            json!({
                "model": call.model,
                "input": {
                    "function": "description_edit",
                    "prompt": call.prompt,
                    "base_image_url": data_uri(image, format.content_type()),
                },
                "parameters": parameters(call),
            }),
        ),
    }
}

impl Provider {
    /// One DashScope call, synchronous or as a polled task.
    pub(super) async fn dashscope(&self, call: &ImageCall<'_>) -> Result<Answer, ProviderError> {
        if self.async_models.iter().any(|m| m == call.model) {
            return self.dashscope_task(call).await;
        }
        let request = self
            .client
            .post(format!("{}{SYNC_PATH}", self.base_url))
            .json(&sync_body(call));
        let value = self.dashscope_json(request).await?;
        let request_id = text(&value, "request_id");
        let images: Vec<ProviderImage> = value
            .pointer("/output/choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|choice| choice.pointer("/message/content").and_then(Value::as_array))
            .flatten()
            .filter_map(|part| part.get("image").and_then(Value::as_str))
            .map(|url| ProviderImage::Url(url.to_string()))
            .collect();
        if images.is_empty() {
            return Err(ProviderError::BadResponse {
                provider: self.name.clone(),
                message: with_request_id("", "no image in output.choices", request_id.as_deref()),
            });
        }
        Ok(Answer { images, request_id })
    }

    async fn dashscope_task(&self, call: &ImageCall<'_>) -> Result<Answer, ProviderError> {
        let (path, body) = async_request(call);
        let request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header("X-DashScope-Async", "enable")
            .json(&body);
        let created = self.dashscope_json(request).await?;
        let task_id = created
            .pointer("/output/task_id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ProviderError::BadResponse {
                provider: self.name.clone(),
                message: "no output.task_id in the answer".into(),
            })?;
        tracing::info!(provider = %self.name, task_id, "DashScope task created");
        loop {
            let poll = self
                .client
                .get(format!("{}/api/v1/tasks/{task_id}", self.base_url));
            let value = self.dashscope_json(poll).await?;
            let status = value
                .pointer("/output/task_status")
                .and_then(Value::as_str)
                .unwrap_or("UNKNOWN");
            match status {
                "SUCCEEDED" => {
                    let images: Vec<ProviderImage> = value
                        .pointer("/output/results")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .filter_map(|r| r.get("url").and_then(Value::as_str))
                        .map(|url| ProviderImage::Url(url.to_string()))
                        .collect();
                    if images.is_empty() {
                        return Err(ProviderError::BadResponse {
                            provider: self.name.clone(),
                            message: format!("task {task_id} succeeded without results"),
                        });
                    }
                    return Ok(Answer {
                        images,
                        request_id: Some(task_id),
                    });
                }
                "FAILED" | "CANCELED" | "UNKNOWN" => {
                    let output = value.get("output").cloned().unwrap_or(Value::Null);
                    let code = text(&output, "code").unwrap_or_default();
                    let message = text(&output, "message").unwrap_or_else(|| status.to_string());
                    return Err(self.dashscope_error(0, &code, &message, Some(&task_id)));
                }
                _ => tokio::time::sleep(self.poll_interval).await,
            }
        }
    }

    /// Sends with the key and reads a JSON answer; error answers become failures.
    async fn dashscope_json(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Value, ProviderError> {
        let response = self
            .bearer(request)
            .send()
            .await
            .map_err(|e| self.network(&e))?;
        let status = response.status().as_u16();
        let body = self.read_capped(response).await?;
        let value: Option<Value> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            let (code, message, request_id) = match &value {
                Some(v) => (
                    text(v, "code").unwrap_or_default(),
                    text(v, "message").unwrap_or_else(|| snippet(&body)),
                    text(v, "request_id"),
                ),
                None => (String::new(), snippet(&body), None),
            };
            return Err(self.dashscope_error(status, &code, &message, request_id.as_deref()));
        }
        value.ok_or_else(|| ProviderError::BadResponse {
            provider: self.name.clone(),
            message: "the answer is not JSON".into(),
        })
    }

    /// DashScope's error codes as SPEC §5 failures.
    fn dashscope_error(
        &self,
        status: u16,
        code: &str,
        message: &str,
        request_id: Option<&str>,
    ) -> ProviderError {
        let provider = self.name.clone();
        let message = with_request_id(code, message, request_id);
        if code.starts_with("DataInspectionFailed")
            || code.eq_ignore_ascii_case("data_inspection_failed")
            || code.contains("IPInfringementSuspect")
        {
            ProviderError::Refused { provider, message }
        } else if code.starts_with("Throttling") || status == 429 {
            ProviderError::RateLimited {
                provider,
                message,
                retry_after: None,
            }
        } else if code.starts_with("InvalidApiKey") || status == 401 {
            ProviderError::KeyRejected { provider, message }
        } else if code.starts_with("Arrearage") {
            ProviderError::OutOfCredits { provider, message }
        } else if code.starts_with("InvalidParameter") || code.starts_with("InvalidURL") {
            ProviderError::InvalidRequest { provider, message }
        } else if status >= 500 || code.starts_with("InternalError") || status == 0 {
            ProviderError::Server {
                provider,
                status: status.max(500),
                message,
            }
        } else {
            ProviderError::Rejected {
                provider,
                status,
                message,
            }
        }
    }
}

fn text(value: &Value, key: &str) -> Option<String> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use atelier_engine::Format;

    use super::*;

    fn call() -> ImageCall<'static> {
        ImageCall {
            model: "qwen-image-edit",
            prompt: "make it blue",
            negative_prompt: "blurry",
            n: 1,
            size: Some((1024, 768)),
            seed: Some(9),
            steps: 0,
            guidance_scale: 0.0,
            image: Some((b"\x89PNG", Format::Png)),
        }
    }

    #[test]
    fn sync_bodies_put_the_image_before_the_text() {
        let body = sync_body(&call());
        let content = &body["input"]["messages"][0]["content"];
        assert_eq!(content[0]["image"], "data:image/png;base64,iVBORw==");
        assert_eq!(content[1]["text"], "make it blue");
        assert_eq!(body["parameters"]["size"], "1024*768");
        assert_eq!(body["parameters"]["negative_prompt"], "blurry");
        assert_eq!(body["parameters"]["seed"], 9);
    }

    #[test]
    fn async_tasks_pick_their_endpoint_by_kind() {
        let (path, body) = async_request(&call());
        assert_eq!(path, IMAGE2IMAGE_PATH);
        assert_eq!(body["input"]["function"], "description_edit");
        let (path, body) = async_request(&ImageCall {
            image: None,
            ..call()
        });
        assert_eq!(path, TEXT2IMAGE_PATH);
        assert_eq!(body["input"]["negative_prompt"], "blurry");
        assert!(body["parameters"].get("negative_prompt").is_none());
    }
}
