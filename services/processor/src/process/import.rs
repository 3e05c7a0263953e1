//! `ImportOutputs`: results a worker outside Atelier made for a task, taken in as the task's outputs.
//! Each URL is fetched through the guarded downloader (the address policy of sources), checked like a
//! source (format, size, dimensions, a full decode for the thumbnail) and stored with its thumbnail,
//! so the outputs carry the same facts as outputs the engine or a provider made. An import takes no
//! attempt slot: it runs no engine and no provider, and its downloads are bounded by their own limits.

use atelier_codes::{decode, status, transient_status};
use atelier_proto::v1;
use futures::future::join_all;
use tokio::sync::mpsc;
use tonic::Status;

use super::attempt::Shared;
use super::output::{imported_image, upload};
use super::ProcessError;
use crate::download::DownloadError;

/// Most result URLs one report may carry.
pub const MAX_URLS: usize = 12;

/// Fetches, checks and stores every URL; the first URL (in order) that fails decides the answer, and
/// nothing is stored unless every URL is good.
pub async fn import(
    shared: &Shared,
    request: v1::ImportOutputsRequest,
) -> Result<v1::ImportOutputsResponse, Status> {
    if request.urls.is_empty() || request.urls.len() > MAX_URLS {
        return Err(ProcessError::invalid("urls", format!("1..={MAX_URLS} URLs")).into());
    }
    if request.output_prefix.is_empty() {
        return Err(ProcessError::invalid("output_prefix", "must not be empty").into());
    }
    let checks = request.urls.iter().enumerate().map(|(i, url)| async move {
        let bytes = shared.downloader.fetch(url).await.map_err(|e| match e {
            DownloadError::InvalidUrl(reason) => {
                ProcessError::invalid(&format!("urls[{i}]"), reason)
            }
            e => ProcessError::Download(e),
        })?;
        imported_image(bytes, format!("result-{}", i + 1), shared.limits.clone()).await
    });
    let mut rendered = Vec::with_capacity(request.urls.len());
    for (i, checked) in join_all(checks).await.into_iter().enumerate() {
        match checked {
            Ok(image) => rendered.push(image),
            Err(err) => {
                tracing::info!(url = i + 1, error = %err, "result refused");
                return Err(naming_url(i, err));
            }
        }
    }
    // `upload` stops when its caller is gone; the caller of this unary call is this function, so
    // the receiver lives until every object is written.
    let (tx, _rx) = mpsc::channel(4 * MAX_URLS);
    let mut outputs = Vec::with_capacity(rendered.len());
    for image in rendered {
        outputs.push(
            upload(shared, &request.output_prefix, image, &tx)
                .await
                .map_err(Status::from)?,
        );
    }
    tracing::info!(
        outputs = outputs.len(),
        "results of an outside worker stored"
    );
    Ok(v1::ImportOutputsResponse { outputs })
}

/// The failure's status, its message saying which URL it was about.
fn naming_url(i: usize, err: ProcessError) -> Status {
    let original = Status::from(err);
    let decoded = decode(&original);
    if decoded.code == atelier_codes::ErrorCode::InvalidArgument {
        // Its field violation names the URL already.
        return original;
    }
    let message = format!("result URL {} of the report: {}", i + 1, decoded.message);
    if decoded.transient {
        transient_status(decoded.code, message)
    } else {
        status(decoded.code, message)
    }
}
