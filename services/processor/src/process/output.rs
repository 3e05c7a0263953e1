//! Storing outputs: the file and its thumbnail under the task's prefix, never after the caller left.
//! Provider images are checked (magic bytes, dimensions, a full decode for the thumbnail) first.

use std::time::Duration;

use atelier_engine::{Fit, Format, Limits, Rendered, Resize, Thumbnail, TransformRecipe};
use atelier_proto::v1;
use atelier_storage::StorageError;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::attempt::{log, EventSender, Shared};
use super::ProcessError;
use crate::providers::ProviderError;

/// Longest side of a thumbnail (SPEC §4).
const THUMBNAIL_SIDE: u32 = 256;

/// Stores one output and its thumbnail, unless the caller has gone.
pub async fn upload(
    shared: &Shared,
    prefix: &str,
    output: Rendered,
    tx: &EventSender,
) -> Result<v1::Output, ProcessError> {
    let key = format!("{prefix}/{}", output.name);
    let stem = output
        .name
        .rsplit_once('.')
        .map_or(output.name.as_str(), |(stem, _)| stem);
    let thumb = output.thumbnail;
    let thumb_key = format!("{prefix}/thumbs/{stem}.{}", thumb.format.extension());
    let sha256 = hex::encode(Sha256::digest(&output.data));
    let bytes = output.data.len() as u64;
    let thumb_bytes = thumb.data.len() as u64;
    let matting = output.matting.map(|m| v1::MattingInfo {
        method: m.method,
        model: m.model,
        confidence: m.confidence,
    });

    // Both writes at once: each waits for its flush to disk, which would otherwise be paid twice
    // in a row while the task holds its caller.
    tokio::try_join!(
        put(shared, tx, &key, output.data, output.format),
        put(shared, tx, &thumb_key, thumb.data, thumb.format),
    )?;

    Ok(v1::Output {
        name: output.name,
        url: shared.storage.url(&key),
        key,
        content_type: output.format.content_type().to_string(),
        width: output.width,
        height: output.height,
        bytes,
        sha256,
        thumbnail: Some(v1::Thumbnail {
            url: shared.storage.url(&thumb_key),
            key: thumb_key,
            content_type: thumb.format.content_type().to_string(),
            width: thumb.width,
            height: thumb.height,
            bytes: thumb_bytes,
        }),
        from_cache: false,
        matting,
    })
}

/// First pause between two tries of a failed write; doubled up to [`RETRY_PAUSE_MAX`].
const RETRY_PAUSE: Duration = Duration::from_millis(200);
const RETRY_PAUSE_MAX: Duration = Duration::from_secs(2);

/// Writes one object. A store that fails (down, restarting, unreachable) is tried again for
/// `shared.storage_retry`, so a short outage costs a pause rather than the attempt; after that the
/// attempt fails with 3009, which the orchestrator retries. Nothing is written once the caller left.
async fn put(
    shared: &Shared,
    tx: &EventSender,
    key: &str,
    data: Vec<u8>,
    format: Format,
) -> Result<(), ProcessError> {
    let data = Bytes::from(data);
    let give_up = Instant::now() + shared.storage_retry;
    let mut pause = RETRY_PAUSE;
    let mut told = false;
    loop {
        if tx.is_closed() {
            return Err(ProcessError::Cancelled);
        }
        let err = match shared
            .storage
            .put(key, data.clone(), format.content_type())
            .await
        {
            Ok(()) => return Ok(()),
            Err(err @ StorageError::Backend(_)) => err,
            Err(err) => return Err(ProcessError::Upload(err)),
        };
        let now = Instant::now();
        if now >= give_up {
            return Err(ProcessError::Upload(err));
        }
        tracing::warn!(key, error = %err, "storing an output failed; trying again");
        if !told {
            // Once per object, so the job's log says why it is slow.
            told = true;
            let line = format!(
                "storing {key} failed; trying again for up to {} s: {err}",
                shared.storage_retry.as_secs_f64()
            );
            log(tx, "warn", &line).await?;
        }
        tokio::select! {
            () = tx.closed() => return Err(ProcessError::Cancelled),
            () = tokio::time::sleep(pause.min(give_up - now)) => {}
        }
        pause = (pause * 2).min(RETRY_PAUSE_MAX);
    }
}

/// Checks an image a provider returned and makes its thumbnail, off the async threads; the output is
/// named `{stem}.{ext}` after the format found by magic bytes. What is wrong with it is the
/// provider's fault.
pub async fn provider_image(
    provider: &str,
    image: Bytes,
    stem: String,
    limits: Limits,
) -> Result<Rendered, ProcessError> {
    let provider = provider.to_string();
    off_thread(move || {
        checked_image(&image, &stem, &limits).map_err(|e| ProviderError::BadImage {
            provider,
            message: e.to_string(),
        })
    })
    .await
}

/// Checks an image a worker outside Atelier made (fetched like a source) and makes its thumbnail,
/// off the async threads; what is wrong with it is the image's fault (3003, 3004, 3017), as for a
/// source. The output is named `{stem}.{ext}` after the format found by magic bytes.
pub async fn imported_image(
    image: Bytes,
    stem: String,
    limits: Limits,
) -> Result<Rendered, ProcessError> {
    off_thread(move || checked_image(&image, &stem, &limits)).await
}

/// An image made elsewhere, probed (format, size) and given a thumbnail, as an output.
fn checked_image(
    image: &Bytes,
    stem: &str,
    limits: &Limits,
) -> Result<Rendered, atelier_engine::EngineError> {
    let info = atelier_engine::probe(image, limits)?;
    let thumbnail = thumbnail(image, info.format, limits)?;
    Ok(Rendered {
        name: format!("{stem}.{}", info.format.extension()),
        format: info.format,
        width: info.width,
        height: info.height,
        data: image.to_vec(),
        thumbnail,
        matting: None,
    })
}

/// Runs an image check on the blocking pool.
async fn off_thread<E: Into<ProcessError> + Send + 'static>(
    check: impl FnOnce() -> Result<Rendered, E> + Send + 'static,
) -> Result<Rendered, ProcessError> {
    match tokio::task::spawn_blocking(check).await {
        Ok(result) => result.map_err(Into::into),
        Err(join) => Err(ProcessError::Internal(format!(
            "image check stopped: {join}"
        ))),
    }
}

/// A thumbnail like the engine's own: longest side 256, PNG for PNG images (alpha), else JPEG.
fn thumbnail(
    image: &[u8],
    format: Format,
    limits: &Limits,
) -> Result<Thumbnail, atelier_engine::EngineError> {
    let recipe = TransformRecipe {
        resize: Some(Resize {
            width: THUMBNAIL_SIDE,
            height: THUMBNAIL_SIDE,
            fit: Fit::Inside,
        }),
        format: Some(if format == Format::Png {
            Format::Png
        } else {
            Format::Jpeg
        }),
        quality: 80,
        ..TransformRecipe::default()
    };
    let rendered = atelier_engine::transform(image, &recipe, limits, &mut |_, _| {})?;
    let first = rendered.into_iter().next().ok_or_else(|| {
        atelier_engine::EngineError::Encode("the thumbnail came out empty".into())
    })?;
    Ok(Thumbnail {
        format: first.format,
        width: first.width,
        height: first.height,
        data: first.data,
    })
}
