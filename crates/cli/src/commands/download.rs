//! `download JOB [DIR]`: fetches every output through its result link and checks its SHA-256.

use std::path::{Component, Path, PathBuf};

use anyhow::Context as _;
use atelier_proto::v1 as pb;
use sha2::{Digest, Sha256};

use crate::client::Api;
use crate::render::{note, print_json, print_line};

/// Largest output accepted (a guard against a wrong link).
const MAX_BYTES: u64 = 1 << 30;

/// Saves every output of the job under `dir` (default: the job id) as `dir/<task id>/<name>`.
pub async fn run(api: &Api, as_json: bool, job_id: &str, dir: Option<&Path>) -> anyhow::Result<()> {
    let job = api
        .jobs()
        .get_job(api.call(pb::GetJobRequest {
            job_id: job_id.to_string(),
        })?)
        .await?
        .into_inner();
    let dir = dir.map_or_else(|| PathBuf::from(&job.id), Path::to_path_buf);
    let client = reqwest::Client::builder()
        .user_agent(concat!("atelier-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("HTTP client")?;
    let mut saved = 0usize;
    for task in &job.tasks {
        for output in &task.outputs {
            let name = safe_name(&output.name)
                .with_context(|| format!("output name {:?} is not a file name", output.name))?;
            let folder =
                dir.join(safe_name(&task.id).unwrap_or_else(|| format!("task-{}", task.index)));
            let path = folder.join(name);
            let data = fetch(&client, &output.url)
                .await
                .with_context(|| format!("cannot download {} of task {}", output.name, task.id))?;
            let digest = hex::encode(Sha256::digest(&data));
            anyhow::ensure!(
                output.sha256.is_empty() || digest.eq_ignore_ascii_case(&output.sha256),
                "{} of task {}: downloaded bytes have sha256 {digest}, the job says {}",
                output.name,
                task.id,
                output.sha256
            );
            tokio::fs::create_dir_all(&folder)
                .await
                .with_context(|| format!("cannot create {}", folder.display()))?;
            write_atomically(&path, &data).await?;
            saved += 1;
            if as_json {
                print_json(&serde_json::json!({
                    "task_id": task.id, "name": output.name, "path": path.display().to_string(),
                    "bytes": data.len(), "sha256": digest,
                }));
            } else {
                print_line(&format!(
                    "{}  {} bytes  sha256 {digest}",
                    path.display(),
                    data.len()
                ));
            }
        }
    }
    if !as_json {
        note(&format!("{saved} outputs saved under {}", dir.display()));
    }
    Ok(())
}

/// A single path component without `..` or separators.
fn safe_name(name: &str) -> Option<String> {
    let mut parts = Path::new(name).components();
    match (parts.next(), parts.next()) {
        (Some(Component::Normal(part)), None) => Some(part.to_string_lossy().into_owned()),
        _ => None,
    }
}

/// The bytes behind a result link: `http(s)://` (presigned S3 or the gateway's `/v1/files/`), or
/// `file://` when the orchestrator has no link secret (same machine only).
async fn fetch(client: &reqwest::Client, url: &str) -> anyhow::Result<Vec<u8>> {
    let parsed = reqwest::Url::parse(url).with_context(|| format!("link {url:?} is not a URL"))?;
    match parsed.scheme() {
        "http" | "https" => {
            let mut response = client.get(parsed).send().await?;
            let status = response.status();
            anyhow::ensure!(status.is_success(), "the link answered {status}");
            let mut data = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                data.extend_from_slice(&chunk);
                anyhow::ensure!(
                    data.len() as u64 <= MAX_BYTES,
                    "the file is larger than 1 GiB"
                );
            }
            Ok(data)
        }
        "file" => {
            let path = parsed
                .to_file_path()
                .map_err(|()| anyhow::anyhow!("link {url:?} is not a local path"))?;
            tokio::fs::read(&path)
                .await
                .with_context(|| format!("cannot read {}", path.display()))
        }
        other => anyhow::bail!("links of scheme {other:?} cannot be downloaded"),
    }
}

async fn write_atomically(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    let temp = path.with_extension("part");
    tokio::fs::write(&temp, data)
        .await
        .with_context(|| format!("cannot write {}", temp.display()))?;
    tokio::fs::rename(&temp, path)
        .await
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn names_stay_inside_the_folder() {
        assert_eq!(safe_name("matting.png").as_deref(), Some("matting.png"));
        for bad in ["", "..", "../x.png", "/etc/passwd", "a/b.png", "."] {
            assert_eq!(safe_name(bad), None, "{bad}");
        }
    }
}
