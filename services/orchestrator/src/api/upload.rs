//! UploadSource: a client stream of chunks, capped while it streams, stored under the tenant's prefix.

use atelier_proto::v1 as pb;
use bytes::BytesMut;
use sea_orm::ActiveValue::Set;
use sha2::{Digest, Sha256};
use tonic::Streaming;

use super::convert;
use crate::auth::TenantCaller;
use crate::context::Context;
use crate::db::{self, entities::upload};
use crate::domain::now_ms;
use crate::error::{ApiError, ApiResult};

const MAX_FILENAME: usize = 255;

/// Reads the stream, refusing it as soon as it passes the cap, and stores the bytes.
pub async fn receive(
    ctx: &Context,
    caller: TenantCaller,
    mut stream: Streaming<pb::UploadSourceRequest>,
) -> ApiResult<pb::Upload> {
    let external = caller.require_account()?.to_string();
    let limit = ctx.policy.max_upload_bytes;
    let mut metadata = pb::UploadMetadata::default();
    let mut data = BytesMut::new();
    let mut first = true;
    while let Some(part) = stream.message().await.map_err(|s| {
        ApiError::field("chunk", format!("the upload stream broke: {}", s.message()))
    })? {
        match part.part {
            Some(pb::upload_source_request::Part::Metadata(m)) if first => {
                if m.size > limit {
                    return Err(ApiError::SourceTooLarge { limit });
                }
                metadata = m;
            }
            Some(pb::upload_source_request::Part::Metadata(_)) => {
                return Err(ApiError::field(
                    "metadata",
                    "send metadata only as the first message",
                ));
            }
            Some(pb::upload_source_request::Part::Chunk(chunk)) => {
                if (data.len() + chunk.len()) as u64 > limit {
                    return Err(ApiError::SourceTooLarge { limit });
                }
                data.extend_from_slice(&chunk);
            }
            None => {}
        }
        first = false;
    }
    if metadata.size != 0 && metadata.size != data.len() as u64 {
        return Err(ApiError::field(
            "metadata.size",
            format!(
                "the upload announced {} bytes but {} arrived; nothing was stored",
                metadata.size,
                data.len()
            ),
        ));
    }
    if metadata.filename.len() > MAX_FILENAME || metadata.filename.chars().any(char::is_control) {
        return Err(ApiError::field(
            "metadata.filename",
            format!("at most {MAX_FILENAME} bytes, no control characters"),
        ));
    }
    // An empty file is a file that is not an image, as it is when the same bytes come by URL.
    let content_type = sniff(&data).ok_or_else(|| {
        ApiError::UnsupportedFormat(if data.is_empty() {
            "the upload is empty (0 bytes), not a JPEG, PNG or WebP image".into()
        } else {
            "the upload is not a JPEG, PNG or WebP image (checked from its bytes)".into()
        })
    })?;
    let account = db::accounts::upsert(&ctx.db, &caller.tenant_id, &external).await?;
    let id = uuid::Uuid::now_v7().to_string();
    let key = format!("t/{}/uploads/{id}", caller.tenant_id);
    let sha256 = hex::encode(Sha256::digest(&data));
    let bytes = data.len() as i64;
    ctx.storage.put(&key, data.freeze(), content_type).await?;
    let model = db::uploads::insert(
        &ctx.db,
        upload::ActiveModel {
            id: Set(id),
            tenant_id: Set(caller.tenant_id),
            account_id: Set(account.id),
            object_key: Set(key),
            bytes: Set(bytes),
            sha256: Set(sha256),
            filename: Set(metadata.filename),
            content_type: Set(content_type.to_string()),
            created_at: Set(now_ms()),
        },
    )
    .await?;
    Ok(convert::upload(&model))
}

/// The image type from magic bytes; the processor validates the rest.
fn sniff(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn sniffs_by_magic_bytes_only() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Some("image/jpeg"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"GIF89a"), None);
        assert_eq!(sniff(b"<html>"), None);
    }
}
