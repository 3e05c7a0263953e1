//! `health`: the standard grpc.health.v1 check, optionally retried until the service is SERVING
//! (how scripts wait for a service to start).

use std::time::{Duration, Instant};

use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::args::HealthArgs;
use crate::client;
use crate::error::Reported;
use crate::render::{note, print_json, print_line};

/// Pause between attempts while waiting.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// What one check found.
enum Answer {
    Status(ServingStatus),
    Failed(anyhow::Error),
}

/// Runs the check; exits 0 only when the service answers SERVING.
pub async fn run(address: &str, as_json: bool, args: &HealthArgs) -> anyhow::Result<()> {
    if args.http {
        return run_http(address, as_json, args).await;
    }
    let endpoint = client::normalize_endpoint(address);
    // Refuse an unusable address at once rather than retrying it.
    client::endpoint(&endpoint, Duration::from_secs(1))?;
    let deadline = args
        .wait
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(|wait| Instant::now() + wait);
    let answer = loop {
        let answer = check(&endpoint, &args.service).await;
        let serving = matches!(answer, Answer::Status(ServingStatus::Serving));
        match deadline {
            Some(deadline) if !serving && Instant::now() + RETRY_EVERY < deadline => {
                tokio::time::sleep(RETRY_EVERY).await;
            }
            _ => break answer,
        }
    };
    let waited = args
        .wait
        .map(|s| format!(" after waiting {s} s"))
        .unwrap_or_default();
    match answer {
        Answer::Status(status) => {
            let name = status.as_str_name();
            if as_json {
                print_json(
                    &json!({ "endpoint": endpoint, "service": args.service, "status": name }),
                );
            } else if status == ServingStatus::Serving {
                print_line(name);
            }
            if status == ServingStatus::Serving {
                return Ok(());
            }
            note(&format!("error: {endpoint} answers {name}{waited}"));
            Err(Reported.into())
        }
        Answer::Failed(err) if args.wait.is_some() => {
            Err(err.context(format!("{endpoint} is not SERVING{waited}")))
        }
        Answer::Failed(err) => Err(err),
    }
}

/// `--http`: GET the URL until it answers 200 (or once without `--wait`).
async fn run_http(url: &str, as_json: bool, args: &HealthArgs) -> anyhow::Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()?;
    let deadline = args
        .wait
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .map(|wait| Instant::now() + wait);
    let outcome = loop {
        let outcome = match client.get(url).send().await {
            Ok(response) => Ok(response.status()),
            Err(err) => Err(anyhow::Error::new(err).context(format!("cannot reach {url}"))),
        };
        let healthy = matches!(&outcome, Ok(status) if status.as_u16() == 200);
        match deadline {
            Some(deadline) if !healthy && Instant::now() + RETRY_EVERY < deadline => {
                tokio::time::sleep(RETRY_EVERY).await;
            }
            _ => break outcome,
        }
    };
    let status = outcome?;
    if as_json {
        print_json(&json!({ "url": url, "status": status.as_u16() }));
    }
    if status.as_u16() == 200 {
        if !as_json {
            print_line("SERVING");
        }
        return Ok(());
    }
    note(&format!("error: {url} answers {status}"));
    Err(Reported.into())
}

async fn check(endpoint: &str, service: &str) -> Answer {
    let channel = match client::endpoint(endpoint, Duration::from_secs(2)) {
        Ok(e) => e.timeout(Duration::from_secs(3)).connect().await,
        Err(e) => return Answer::Failed(e.into()),
    };
    let channel = match channel {
        Ok(channel) => channel,
        Err(e) => {
            return Answer::Failed(
                anyhow::Error::new(e).context(format!("cannot reach {endpoint}")),
            )
        }
    };
    let request = HealthCheckRequest {
        service: service.to_string(),
    };
    match HealthClient::new(channel).check(request).await {
        Ok(response) => Answer::Status(
            ServingStatus::try_from(response.into_inner().status).unwrap_or(ServingStatus::Unknown),
        ),
        Err(status) => Answer::Failed(status.into()),
    }
}
