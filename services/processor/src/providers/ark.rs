//! VolcEngine Ark (Doubao Seedream): `POST {base}/api/v3/images/generations` with a Bearer key.
//!
//! One endpoint serves text-to-image and image-to-image: edits and pose shots send the source as a
//! data URI in `image`. More than one image is asked for as a set
//! (`sequential_image_generation: "auto"` with `max_images`). Answers are
//! `{"data": [{"url"} | {"b64_json"} | {"error"}], "usage": {…}}`; errors `{"error": {"code",
//! "message"}}`, the request id in the `x-request-id` header.

use serde_json::{json, Value};

use super::openai::{Answer, ImageCall, Provider, ProviderImage};
use super::ProviderError;

/// Ark's header carrying the request id.
const REQUEST_ID: &str = "x-request-id";

/// The image a model call sends, as a data URI (`data:image/png;base64,…`).
pub(super) fn data_uri(image: &[u8], content_type: &str) -> String {
    use base64::Engine as _;
    format!(
        "data:{content_type};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(image)
    )
}

/// The JSON body of one call.
pub(super) fn body(call: &ImageCall<'_>, response_format: &str) -> Value {
    let mut body = json!({
        "model": call.model,
        "prompt": call.prompt,
        "response_format": response_format,
        "watermark": false,
    });
    if let Some((image, format)) = call.image {
        body["image"] = Value::from(data_uri(image, format.content_type()));
    }
    if let Some((w, h)) = call.size {
        body["size"] = Value::from(format!("{w}x{h}"));
    }
    if let Some(seed) = call.seed {
        body["seed"] = Value::from(seed);
    }
    if call.guidance_scale > 0.0 {
        body["guidance_scale"] = Value::from(f64::from(call.guidance_scale));
    }
    if call.n > 1 {
        body["sequential_image_generation"] = Value::from("auto");
        body["sequential_image_generation_options"] = json!({"max_images": call.n});
    } else {
        body["sequential_image_generation"] = Value::from("disabled");
    }
    body
}

impl Provider {
    /// One Ark call.
    pub(super) async fn ark(&self, call: &ImageCall<'_>) -> Result<Answer, ProviderError> {
        let request = self
            .client
            .post(format!("{}/api/v3/images/generations", self.base_url))
            .json(&body(call, &self.response_format));
        let response = self
            .bearer(request)
            .send()
            .await
            .map_err(|e| self.network(&e))?;
        let status = response.status().as_u16();
        let request_id = response
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = self.read_capped(response).await?;
        let value: Option<Value> = serde_json::from_slice(&body).ok();
        if !(200..300).contains(&status) {
            let (code, message) = value
                .as_ref()
                .and_then(|v| v.get("error"))
                .map(code_and_message)
                .unwrap_or_else(|| (String::new(), snippet(&body)));
            return Err(self.ark_error(status, &code, &message, request_id.as_deref()));
        }
        let value = value.ok_or_else(|| ProviderError::BadResponse {
            provider: self.name.clone(),
            message: "the answer is not JSON".into(),
        })?;
        let data = value
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut images = Vec::new();
        let mut first_error = None;
        for item in &data {
            if let Some(url) = item.get("url").and_then(Value::as_str) {
                images.push(ProviderImage::Url(url.to_string()));
            } else if let Some(b64) = item.get("b64_json").and_then(Value::as_str) {
                use base64::Engine as _;
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| ProviderError::BadResponse {
                        provider: self.name.clone(),
                        message: format!("b64_json is not base64: {e}"),
                    })?;
                images.push(ProviderImage::Bytes(bytes.into()));
            } else if let Some(error) = item.get("error") {
                first_error.get_or_insert_with(|| code_and_message(error));
            }
        }
        if images.is_empty() {
            return Err(match first_error {
                Some((code, message)) => {
                    self.ark_error(status, &code, &message, request_id.as_deref())
                }
                None => ProviderError::BadResponse {
                    provider: self.name.clone(),
                    message: "no image in `data`".into(),
                },
            });
        }
        Ok(Answer { images, request_id })
    }

    /// Ark's error codes as SPEC §5 failures.
    fn ark_error(
        &self,
        status: u16,
        code: &str,
        message: &str,
        request_id: Option<&str>,
    ) -> ProviderError {
        let provider = self.name.clone();
        let message = with_request_id(code, message, request_id);
        if code.contains("SensitiveContent") || code.contains("ContentSecurity") {
            ProviderError::Refused { provider, message }
        } else if code.starts_with("RateLimitExceeded")
            || code.starts_with("ServerOverloaded")
            || status == 429
        {
            ProviderError::RateLimited {
                provider,
                message,
                retry_after: None,
            }
        } else if code.starts_with("AuthenticationError")
            || code.starts_with("InvalidAccessKey")
            || status == 401
        {
            ProviderError::KeyRejected { provider, message }
        } else if code.starts_with("AccountOverdue") || code.starts_with("QuotaExceeded") {
            ProviderError::OutOfCredits { provider, message }
        } else if code.starts_with("InvalidParameter") || code.starts_with("MissingParameter") {
            ProviderError::InvalidRequest { provider, message }
        } else if status >= 500 || code.starts_with("InternalServiceError") {
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

/// `code` and `message` of an error object.
pub(super) fn code_and_message(error: &Value) -> (String, String) {
    let text = |key: &str| {
        error
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (text("code"), text("message"))
}

/// The start of a body that is not the expected JSON.
pub(super) fn snippet(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body).chars().take(200).collect();
    if text.trim().is_empty() {
        "no details".into()
    } else {
        text
    }
}

/// `message (code CODE, request id ID)`.
pub(super) fn with_request_id(code: &str, message: &str, request_id: Option<&str>) -> String {
    let mut text = if message.is_empty() {
        "no details".to_string()
    } else {
        message.to_string()
    };
    let mut notes = Vec::new();
    if !code.is_empty() {
        notes.push(format!("code {code}"));
    }
    if let Some(id) = request_id.filter(|id| !id.is_empty()) {
        notes.push(format!("request id {id}"));
    }
    if !notes.is_empty() {
        text.push_str(&format!(" ({})", notes.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use atelier_engine::Format;

    use super::*;

    #[test]
    fn sets_are_asked_for_sequentially_and_edits_carry_a_data_uri() {
        let call = ImageCall {
            model: "doubao-seedream-4-0-250828",
            prompt: "a red shoe",
            negative_prompt: "",
            n: 3,
            size: Some((1024, 768)),
            seed: Some(5),
            steps: 0,
            guidance_scale: 2.5,
            image: Some((b"\x89PNG", Format::Png)),
        };
        let body = body(&call, "url");
        assert_eq!(body["sequential_image_generation"], "auto");
        assert_eq!(body["sequential_image_generation_options"]["max_images"], 3);
        assert_eq!(body["size"], "1024x768");
        assert_eq!(body["watermark"], false);
        assert_eq!(body["image"], "data:image/png;base64,iVBORw==");
        let single = super::body(&ImageCall { n: 1, ..call }, "b64_json");
        assert_eq!(single["response_format"], "b64_json");
        assert_eq!(single["sequential_image_generation"], "disabled");
    }

    #[test]
    fn request_ids_and_codes_are_named() {
        assert_eq!(
            with_request_id("InvalidParameter", "bad size", Some("r-1")),
            "bad size (code InvalidParameter, request id r-1)"
        );
        assert_eq!(with_request_id("", "", None), "no details");
    }
}
