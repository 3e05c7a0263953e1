//! `watch JOB_ID`: follows WatchJob to the end, resuming after the last sequence seen when the
//! connection drops, then prints the final job. Exits 1 when the job did not succeed.

use std::io::IsTerminal;
use std::time::Duration;

use atelier_proto::v1 as pb;
use atelier_proto::v1::job_service_client::JobServiceClient;
use tonic::transport::Channel;

use crate::client::Api;
use crate::error::Reported;
use crate::progress::Progress;
use crate::render::{human, json, names, note, print_json, print_text};

/// Reconnections in a row before giving up on a dropped stream.
const MAX_RECONNECTS: u32 = 5;

/// Follows `job_id` from `after` until it is terminal and prints it.
pub async fn follow(api: &Api, as_json: bool, job_id: &str, after: u64) -> anyhow::Result<()> {
    let mut jobs = api.jobs();
    let get = |job_id: &str| {
        api.call(pb::GetJobRequest {
            job_id: job_id.to_string(),
        })
    };
    let mut job = jobs.get_job(get(job_id)?).await?.into_inner();
    let live = !as_json && std::io::stderr().is_terminal();
    let mut progress = Progress::new(std::io::stderr(), live, &job);
    let mut last = after;
    let mut reconnects = 0;
    loop {
        let request = api.call(pb::WatchJobRequest {
            job_id: job_id.to_string(),
            after_sequence: last,
        })?;
        match stream_events(&mut jobs, request, &mut last, as_json, &mut progress).await {
            Ok(()) => {}
            Err(status)
                if status.code() == tonic::Code::Unavailable && reconnects < MAX_RECONNECTS => {}
            Err(status) => {
                progress.finish();
                return Err(status.into());
            }
        }
        job = match jobs.get_job(get(job_id)?).await {
            Ok(job) => job.into_inner(),
            Err(status)
                if status.code() == tonic::Code::Unavailable && reconnects < MAX_RECONNECTS =>
            {
                job
            }
            Err(status) => {
                progress.finish();
                return Err(status.into());
            }
        };
        if names::job_is_terminal(job.state) {
            break;
        }
        // The stream ended or dropped before the job did (a restart, a network blip): resume.
        reconnects += 1;
        if reconnects > MAX_RECONNECTS {
            progress.finish();
            anyhow::bail!("the event stream of job {job_id} keeps ending before the job does; try `atelier watch {job_id} --after {last}`");
        }
        tokio::time::sleep(Duration::from_millis(250 * u64::from(reconnects))).await;
    }
    progress.finish();
    if as_json {
        print_json(&json::job(&job));
    } else {
        print_text(&human::job(&job));
    }
    if job.state == pb::JobState::Succeeded as i32 {
        Ok(())
    } else {
        if !as_json {
            note(&format!(
                "job {} ended {}",
                job.id,
                names::job_state(job.state)
            ));
        }
        Err(Reported.into())
    }
}

/// Shows the events of one WatchJob call until its stream ends, advancing `last` to the newest sequence.
async fn stream_events(
    jobs: &mut JobServiceClient<Channel>,
    request: tonic::Request<pb::WatchJobRequest>,
    last: &mut u64,
    as_json: bool,
    progress: &mut Progress<std::io::Stderr>,
) -> Result<(), tonic::Status> {
    let mut stream = jobs.watch_job(request).await?.into_inner();
    while let Some(event) = stream.message().await? {
        *last = (*last).max(event.sequence);
        if as_json {
            print_json(&json::event(&event));
        } else {
            progress.event(&event);
        }
    }
    Ok(())
}
