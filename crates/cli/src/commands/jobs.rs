//! `upload`, `submit`, `get`, `list`, `cancel`.

use std::path::Path;

use anyhow::Context as _;
use atelier_proto::v1 as pb;
use tokio::io::AsyncReadExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::args::{ListArgs, SubmitArgs};
use crate::client::Api;
use crate::commands::watch;
use crate::render::{human, json, note, print_json, print_line, print_text};
use crate::requests::{self, SourceArg};

/// Uploads are streamed in chunks of this size.
pub const CHUNK: usize = 64 * 1024;

/// `upload FILE`: prints the upload id (or the upload as JSON).
pub async fn upload(api: &Api, as_json: bool, file: &Path) -> anyhow::Result<()> {
    let upload = upload_file(api, file).await?;
    if as_json {
        print_json(&json::upload(&upload));
    } else {
        note(&format!(
            "uploaded {}: {} bytes, sha256 {}",
            file.display(),
            upload.bytes,
            upload.sha256
        ));
        print_line(&upload.id);
    }
    Ok(())
}

/// Streams a local file to UploadSource: the metadata first, then 64 KiB chunks read as they are sent.
pub async fn upload_file(api: &Api, path: &Path) -> anyhow::Result<pb::Upload> {
    let mut file = tokio::fs::File::open(path)
        .await
        .with_context(|| format!("cannot open {}", path.display()))?;
    let metadata = file
        .metadata()
        .await
        .with_context(|| format!("cannot read {}", path.display()))?;
    anyhow::ensure!(metadata.is_file(), "{} is not a file", path.display());
    let filename = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let first = pb::UploadSourceRequest {
        part: Some(pb::upload_source_request::Part::Metadata(
            pb::UploadMetadata {
                filename,
                content_type: requests::content_type_for(path).to_string(),
                // A file that changes while it is read, or a stream cut short, is refused whole.
                size: metadata.len(),
            },
        )),
    };
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let request = api.call(ReceiverStream::new(receiver))?;
    let display = path.display().to_string();
    let mut reader = tokio::spawn(async move {
        if sender.send(first).await.is_err() {
            return Ok(());
        }
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_chunk(&mut file, &mut buf)
                .await
                .with_context(|| format!("cannot read {display}"))?;
            if n == 0 {
                return Ok(());
            }
            let chunk = pb::UploadSourceRequest {
                part: Some(pb::upload_source_request::Part::Chunk(buf[..n].to_vec())),
            };
            // The server stopped reading (it answered already, usually with an error): stop too.
            if sender.send(chunk).await.is_err() || n < CHUNK {
                return Ok(());
            }
        }
    });
    let mut jobs = api.jobs();
    let call = jobs.upload_source(request);
    tokio::pin!(call);
    let answer = tokio::select! {
        answer = &mut call => {
            reader.abort();
            answer
        }
        read = &mut reader => match read {
            Ok(Ok(())) => call.await,
            // Dropping the call cancels the stream, so the server never stores a truncated file.
            Ok(Err(e)) => return Err(e),
            Err(e) => anyhow::bail!("reading {} stopped: {e}", path.display()),
        },
    };
    Ok(answer?.into_inner())
}

/// Reads until `buf` is full or the file ends; returns how many bytes were read.
async fn read_chunk(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// `submit KIND SOURCES…`: uploads local files, submits, and follows the job with `--watch`.
pub async fn submit(api: &Api, as_json: bool, args: &SubmitArgs) -> anyhow::Result<()> {
    // Refuse bad options (and sources the kind does not take) before spending time on uploads.
    requests::submit_request(args, Vec::new())?;
    let classified = args
        .sources
        .iter()
        .map(|s| SourceArg::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut sources = Vec::with_capacity(classified.len());
    for source in &classified {
        match (source.to_source(), source) {
            (Some(s), _) => sources.push(s),
            (None, SourceArg::File(path)) => {
                let upload = upload_file(api, path).await?;
                if !as_json {
                    note(&format!(
                        "uploaded {} as upload:{}",
                        path.display(),
                        upload.id
                    ));
                }
                sources.push(requests::upload_source(&upload.id));
            }
            (None, _) => anyhow::bail!("source {source:?} has no wire form"),
        }
    }
    let request = requests::submit_request(args, sources)?;
    let job = api
        .jobs()
        .submit_job(api.call(request)?)
        .await?
        .into_inner();
    if as_json {
        print_json(&json::job(&job));
    } else if args.watch {
        // The whole job is printed when it ends; the header says which job is being followed.
        print_line(human::job(&job).lines().next().unwrap_or_default());
    } else {
        print_text(&human::job(&job));
    }
    if args.watch {
        watch::follow(api, as_json, &job.id, 0).await?;
    }
    Ok(())
}

/// `get JOB_ID`.
pub async fn get(api: &Api, as_json: bool, job_id: &str) -> anyhow::Result<()> {
    let job = api
        .jobs()
        .get_job(api.call(pb::GetJobRequest {
            job_id: job_id.to_string(),
        })?)
        .await?
        .into_inner();
    show_job(as_json, &job);
    Ok(())
}

/// `cancel JOB_ID`.
pub async fn cancel(api: &Api, as_json: bool, job_id: &str) -> anyhow::Result<()> {
    let job = api
        .jobs()
        .cancel_job(api.call(pb::CancelJobRequest {
            job_id: job_id.to_string(),
        })?)
        .await?
        .into_inner();
    show_job(as_json, &job);
    Ok(())
}

fn show_job(as_json: bool, job: &pb::Job) {
    if as_json {
        print_json(&json::job(job));
    } else {
        print_text(&human::job(job));
    }
}

/// `list`: one page of jobs, newest first.
pub async fn list(api: &Api, as_json: bool, args: &ListArgs) -> anyhow::Result<()> {
    let request = pb::ListJobsRequest {
        page_size: args.page_size.unwrap_or(0),
        page_token: args.page_token.clone().unwrap_or_default(),
        state: args.state.map_or(0, |s| s.number()),
        kind: args.kind.map_or(0, |k| k.number()),
        account: String::new(),
        label: args.label.clone().unwrap_or_default(),
        created: None,
    };
    let page = api.jobs().list_jobs(api.call(request)?).await?.into_inner();
    if as_json {
        print_json(&json::jobs(&page));
        return Ok(());
    }
    if page.jobs.is_empty() {
        note("no jobs");
    }
    for job in &page.jobs {
        print_line(&human::job_row(job));
    }
    if !page.next_page_token.is_empty() {
        note(&format!("more: --page-token {}", page.next_page_token));
    }
    Ok(())
}

/// `delete JOB_ID`: removes a finished job, its outputs and events.
pub async fn delete(api: &Api, as_json: bool, job_id: &str) -> anyhow::Result<()> {
    let deleted = api
        .jobs()
        .delete_job(api.call(pb::DeleteJobRequest {
            job_id: job_id.to_string(),
        })?)
        .await?
        .into_inner();
    if as_json {
        print_json(&serde_json::json!({
            "job_id": deleted.job_id,
            "objects_deleted": deleted.objects_deleted,
            "objects_kept": deleted.objects_kept,
        }));
    } else {
        print_line(&format!(
            "deleted {}: {} objects removed, {} kept (still used by other jobs)",
            deleted.job_id, deleted.objects_deleted, deleted.objects_kept
        ));
    }
    Ok(())
}
