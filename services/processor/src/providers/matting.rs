//! The remote matting adapters behind basic_clean: remove.bg's API (`POST {base}/v1.0/removebg`,
//! multipart `image_file` with `size` and `format=png`, key in `X-Api-Key`) and a self-hosted rembg
//! server (`POST {base}/api/remove`, multipart `file` and `model`). Both answer a PNG cut-out, whose
//! alpha becomes the mask the engine refines against the photo ([`answer_mask`]).

use std::io::Cursor;
use std::time::Duration;

use atelier_engine::{Format, SegmentationMask};
use bytes::Bytes;
use image::DynamicImage;
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use serde_json::Value;

use super::{Protocol, Provider, ProviderError};

/// The longest `Retry-After` waited out within one attempt; a longer one fails the attempt as
/// transient and the orchestrator's backoff takes over.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// remove.bg's error code for a photo in which it found nothing to cut out.
const NO_FOREGROUND: &str = "unknown_foreground";

/// Largest side of an answer decoded (remove.bg's largest output is 25 megapixels).
const MAX_ANSWER_SIDE: u32 = 16_384;

/// Memory an answer may take while decoding.
const MAX_ANSWER_ALLOC: u64 = 512 * 1024 * 1024;

const PNG_MAGIC: &[u8] = b"\x89PNG\r\n\x1a\n";

impl Provider {
    /// The cut-out of the photo `image` (the source bytes as fetched), as the service's PNG.
    /// A 429 asking to wait at most [`MAX_RETRY_AFTER`] is waited out and tried once more.
    pub async fn cut_out(
        &self,
        model: &str,
        image: &[u8],
        format: Format,
    ) -> Result<Bytes, ProviderError> {
        let first = self
            .guarded(model, self.send_cut_out(model, image, format))
            .await;
        match first {
            Err(ProviderError::RateLimited {
                retry_after: Some(wait),
                ..
            }) if wait <= MAX_RETRY_AFTER => {
                tracing::info!(provider = %self.name, wait_ms = wait.as_millis() as u64,
                    "rate limited; waiting as asked, then trying once more");
                tokio::time::sleep(wait).await;
                self.guarded(model, self.send_cut_out(model, image, format))
                    .await
            }
            other => other,
        }
    }

    async fn send_cut_out(
        &self,
        model: &str,
        image: &[u8],
        format: Format,
    ) -> Result<Bytes, ProviderError> {
        let (path, file_field, fields) = match self.protocol {
            Protocol::RemoveBg => (
                "/v1.0/removebg",
                "image_file",
                vec![("size", self.size.as_str()), ("format", "png")],
            ),
            Protocol::Rembg => ("/api/remove", "file", vec![("model", model)]),
            other => {
                return Err(ProviderError::Setup {
                    provider: self.name.clone(),
                    message: format!(
                        "protocol {} does not cut out; use removebg or rembg",
                        other.as_str()
                    ),
                })
            }
        };
        let boundary = format!("atelier-{}", uuid::Uuid::new_v4().simple());
        let mut request = self
            .client
            .post(format!("{}{path}", self.base_url))
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(multipart(&fields, file_field, image, format, &boundary));
        if let Some(key) = &self.api_key {
            request = match self.protocol {
                Protocol::RemoveBg => request.header("X-Api-Key", key.expose()),
                // A rembg server has no keys of its own; one in front of it (a proxy) may.
                _ => request.header(AUTHORIZATION, format!("Bearer {}", key.expose())),
            };
        }
        let response = request.send().await.map_err(|e| self.network(&e))?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = self.read_capped(response).await?;
        if (200..300).contains(&status) {
            if !body.starts_with(PNG_MAGIC) {
                return Err(ProviderError::BadImage {
                    provider: self.name.clone(),
                    message: "the answer is not a PNG".into(),
                });
            }
            return Ok(body);
        }
        Err(self.cut_out_error(status, &body, retry_after))
    }

    fn cut_out_error(
        &self,
        status: u16,
        body: &[u8],
        retry_after: Option<Duration>,
    ) -> ProviderError {
        let (message, code) = error_of(body);
        let provider = self.name.clone();
        match status {
            400 if code.as_deref() == Some(NO_FOREGROUND) => {
                ProviderError::NoSubject { provider, message }
            }
            402 => ProviderError::OutOfCredits { provider, message },
            401 | 403 => ProviderError::Rejected {
                provider,
                status,
                message: format!("API key refused: {message}"),
            },
            429 => ProviderError::RateLimited {
                provider,
                message,
                retry_after,
            },
            500..=599 => ProviderError::Server {
                provider,
                status,
                message,
            },
            _ => ProviderError::Rejected {
                provider,
                status,
                message,
            },
        }
    }
}

/// The mask in a service's answer: the alpha of its cut-out (or the grey of a bare mask, as rembg's
/// `om` answers), at the answer's own size, which must have the shape of the upright photo.
pub fn answer_mask(
    provider: &str,
    png: &[u8],
    photo_width: u32,
    photo_height: u32,
) -> Result<SegmentationMask, ProviderError> {
    let bad = |message: String| ProviderError::BadImage {
        provider: provider.to_string(),
        message,
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(png), image::ImageFormat::Png);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_ANSWER_SIDE);
    limits.max_image_height = Some(MAX_ANSWER_SIDE);
    limits.max_alloc = Some(MAX_ANSWER_ALLOC);
    reader.limits(limits);
    let decoded = reader
        .decode()
        .map_err(|e| bad(format!("its PNG cannot be read: {e}")))?;
    let (w, h) = (decoded.width(), decoded.height());
    // Resizing rounds each side by at most half a pixel, so the cross products differ by at most
    // (W + H) / 2; anything more is another shape (for example a photo it did not turn upright).
    let skew =
        (u64::from(w) * u64::from(photo_height)).abs_diff(u64::from(h) * u64::from(photo_width));
    if w == 0 || h == 0 || skew > u64::from(photo_width) + u64::from(photo_height) {
        return Err(bad(format!(
            "its cut-out is {w}x{h}, which is not the shape of the {photo_width}x{photo_height} \
             photo (a service that ignores the EXIF orientation answers sideways)"
        )));
    }
    let byte = |v: u8| f32::from(v) / 255.0;
    let word = |v: u16| f32::from(v) / 65535.0;
    let values: Vec<f32> = match &decoded {
        DynamicImage::ImageRgba8(i) => i.pixels().map(|p| byte(p.0[3])).collect(),
        DynamicImage::ImageLumaA8(i) => i.pixels().map(|p| byte(p.0[1])).collect(),
        DynamicImage::ImageRgba16(i) => i.pixels().map(|p| word(p.0[3])).collect(),
        DynamicImage::ImageLumaA16(i) => i.pixels().map(|p| word(p.0[1])).collect(),
        DynamicImage::ImageLuma8(i) => i.pixels().map(|p| byte(p.0[0])).collect(),
        DynamicImage::ImageLuma16(i) => i.pixels().map(|p| word(p.0[0])).collect(),
        _ => {
            return Err(bad(
                "its PNG has no alpha channel, so it is not a cut-out".into()
            ))
        }
    };
    SegmentationMask::new(w, h, values).map_err(|e| bad(e.to_string()))
}

fn multipart(
    fields: &[(&str, &str)],
    file_field: &str,
    image: &[u8],
    format: Format,
    boundary: &str,
) -> Vec<u8> {
    let mut body = Vec::with_capacity(image.len() + 512);
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"image.{}\"\r\nContent-Type: {}\r\n\r\n",
            format.extension(),
            format.content_type()
        )
        .as_bytes(),
    );
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

/// `Retry-After` in seconds; an HTTP date is not waited for.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The message and code of an error answer: remove.bg's `{"errors": [{"title", "code"}]}`,
/// FastAPI's `{"detail": …}` (rembg), or the start of whatever was sent.
fn error_of(body: &[u8]) -> (String, Option<String>) {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if let Some(first) = parsed
        .as_ref()
        .and_then(|v| v.get("errors"))
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
    {
        let title = first.get("title").and_then(Value::as_str);
        let code = first
            .get("code")
            .and_then(Value::as_str)
            .map(str::to_string);
        let message = match (title, &code) {
            (Some(title), Some(code)) => format!("{title} ({code})"),
            (Some(title), None) => title.to_string(),
            (None, Some(code)) => code.clone(),
            (None, None) => first.to_string(),
        };
        return (message, code);
    }
    match parsed.as_ref().and_then(|v| v.get("detail")) {
        Some(Value::String(detail)) => return (detail.clone(), None),
        Some(Value::Array(details)) => {
            let messages: Vec<String> = details
                .iter()
                .map(|d| {
                    let what = d.get("msg").and_then(Value::as_str).unwrap_or("invalid");
                    match d.get("loc") {
                        Some(loc) => format!("{loc}: {what}"),
                        None => what.to_string(),
                    }
                })
                .collect();
            return (messages.join("; "), None);
        }
        _ => {}
    }
    let text = String::from_utf8_lossy(body);
    let text: String = text.chars().take(200).collect();
    if text.trim().is_empty() {
        ("no details".to_string(), None)
    } else {
        (text, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    }

    #[test]
    fn remove_bg_errors_give_title_and_code() {
        let body =
            br#"{"errors":[{"title":"Insufficient credits","code":"insufficient_credits"}]}"#;
        let (message, code) = error_of(body);
        assert_eq!(message, "Insufficient credits (insufficient_credits)");
        assert_eq!(code.as_deref(), Some("insufficient_credits"));
        let fastapi = br#"{"detail":[{"loc":["body","file"],"msg":"field required"}]}"#;
        assert_eq!(error_of(fastapi).0, r#"["body","file"]: field required"#);
        assert_eq!(error_of(b"").0, "no details");
    }

    #[test]
    fn the_mask_is_the_alpha_at_the_answer_size() {
        let cut = image::RgbaImage::from_fn(40, 30, |x, _| {
            image::Rgba([9, 9, 9, if x < 20 { 255 } else { 0 }])
        });
        let mask = answer_mask("p", &png(DynamicImage::ImageRgba8(cut)), 80, 60).expect("mask");
        assert_eq!((mask.width, mask.height), (40, 30));
        assert_eq!(mask.values[0], 1.0);
        assert_eq!(mask.values[39], 0.0);
        // A bare grey mask is a mask too.
        let grey = image::GrayImage::from_pixel(8, 6, image::Luma([128]));
        let mask = answer_mask("p", &png(DynamicImage::ImageLuma8(grey)), 80, 60).expect("grey");
        assert!((mask.values[0] - 128.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn answers_that_are_not_cut_outs_of_the_photo_are_refused() {
        let rgb = image::RgbImage::new(40, 30);
        let err = answer_mask("p", &png(DynamicImage::ImageRgb8(rgb)), 40, 30).expect_err("rgb");
        assert!(err.to_string().contains("no alpha"), "{err}");
        let sideways = image::RgbaImage::new(30, 40);
        let err = answer_mask("p", &png(DynamicImage::ImageRgba8(sideways)), 40, 30)
            .expect_err("sideways");
        assert!(err.to_string().contains("30x40"), "{err}");
        assert!(!err.is_transient());
        assert!(answer_mask("p", b"\x89PNG\r\n\x1a\nbroken", 40, 30).is_err());
        // Rounding a resized side is not a different shape.
        let rounded = image::RgbaImage::new(333, 250);
        assert!(answer_mask("p", &png(DynamicImage::ImageRgba8(rounded)), 1000, 751).is_ok());
    }

    #[test]
    fn multipart_bodies_name_the_file_field() {
        let body = multipart(
            &[("size", "full")],
            "image_file",
            b"\xff\xd8",
            Format::Jpeg,
            "B",
        );
        let text = String::from_utf8_lossy(&body);
        assert!(text
            .starts_with("--B\r\nContent-Disposition: form-data; name=\"size\"\r\n\r\nfull\r\n"));
        assert!(text.contains(
            "name=\"image_file\"; filename=\"image.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
        ));
        assert!(text.ends_with("\r\n--B--\r\n"));
    }
}
