//! The processor service at full load against the bare engine at full load (SPEC §8: the service
//! adds at most 15 %), for `make bench-engine`.
//!
//! Both sides do the same transform on the same file with the same number of workers, one per core:
//! - bare engine: `n` threads, each reading the file and running `atelier_engine::transform` in a
//!   loop (what `run` times, on one thread, for the per-case table);
//! - processor: the real service (`atelier_processor::spawn`, release build, content cache off so
//!   every call runs the engine), started in this process, and `n` clients each calling `Process`
//!   over gRPC in a loop and reading the stream to its end. The source comes either from a local
//!   HTTP server on 127.0.0.1 (a new connection per download, as the processor fetches sources) or
//!   from an upload, an object in the processor's local object store (`SourceRef::ObjectKey`). The
//!   processor hashes and probes the source, runs the engine on its blocking pool, hashes the
//!   output and writes the output and its thumbnail to its object store (a local folder; each write
//!   is flushed to disk and renamed into place), and streams Accepted, SourceFetched, Progress,
//!   Output, Log and Completed.
//!
//! The HTTP server and the clients run in the same process, on the same cores, so their work counts
//! against the processor: the overhead measured is an upper bound of the service's own. Rounds
//! alternate bare, URL and upload, so load changes on the machine touch all three alike; the median
//! of the rounds is reported.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use atelier_proto::v1::{self, process_event::Event};
use serde_json::{json, Value};
use tonic::transport::{Channel, Endpoint};

use crate::{cpu_ms, find_case, input_path, median, round3, run_once, Case};

/// The service token of the processor started here.
const TOKEN: &str = "bench-service-token";
/// Where uploads live in the processor's object store, and where its outputs go.
const UPLOADS: &str = "t/bench/uploads";
const OUTPUTS: &str = "t/bench/out";

/// What `service` runs.
pub struct Options {
    /// The generated inputs.
    pub dir: PathBuf,
    /// Case ids (A, B, B_lossless, C); D's 50 MP source is over the processor's 10 MiB limit.
    pub cases: Vec<String>,
    /// Images per worker in each timed round.
    pub per_worker: usize,
    /// Untimed images per worker before the first round, for each side.
    pub warmup: usize,
    /// Timed rounds per side.
    pub rounds: usize,
    /// The processor's object store (emptied of outputs after each round).
    pub objects: PathBuf,
}

/// How the processor gets its source.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Url,
    Upload,
}

impl Source {
    fn name(self) -> &'static str {
        match self {
            Self::Url => "url",
            Self::Upload => "upload",
        }
    }
}

/// One timed round of one side.
struct Round {
    images: usize,
    seconds: f64,
    cpu_ms: f64,
    /// Bytes of the (last) main output, to check both sides made the same image.
    out_bytes: u64,
}

impl Round {
    fn per_second(&self) -> f64 {
        self.images as f64 / self.seconds
    }
}

/// The workers, one per core.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn run(o: &Options) -> Result<Value> {
    crate::images::generate(&o.dir)?;
    let n = workers();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let _ = std::fs::remove_dir_all(&o.objects);
    std::fs::create_dir_all(&o.objects)
        .with_context(|| format!("creating {}", o.objects.display()))?;
    let objects = std::fs::canonicalize(&o.objects)?;
    let world = runtime.block_on(World::start(&objects))?;

    let mut cases = serde_json::Map::new();
    for id in &o.cases {
        let case = find_case(id)?;
        if case.big {
            bail!("case {id}: its source is over the processor's 10 MiB source limit");
        }
        let path = input_path(&o.dir, case.input)?;
        let body = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| anyhow!("{} has no file name", path.display()))?
            .to_string();
        let upload_key = format!("{UPLOADS}/{name}");
        let upload_path = objects.join(&upload_key);
        if let Some(folder) = upload_path.parent() {
            std::fs::create_dir_all(folder)?;
        }
        std::fs::write(&upload_path, &body)?;
        let content_type = if name.ends_with(".png") {
            "image/png"
        } else {
            "image/jpeg"
        };
        let url_path = format!("/files/{name}");
        world.sources.serve_file(&url_path, content_type, body);
        let url = world.sources.url(&url_path);
        let source_of = |s: Source| match s {
            Source::Url => v1::source_ref::Source::Url(url.clone()),
            Source::Upload => v1::source_ref::Source::ObjectKey(upload_key.clone()),
        };

        eprintln!(
            "service: case {} ({}), {n} workers, {} warm-up + {} rounds of {} images each per side",
            case.id, case.label, o.warmup, o.rounds, o.per_worker
        );
        bare(case, &path, n, o.warmup)?;
        for s in [Source::Url, Source::Upload] {
            runtime.block_on(world.processor(case, source_of(s), n, o.warmup, "warmup"))?;
        }
        world.clear_outputs()?;
        let (mut bare_rounds, mut url_rounds, mut upload_rounds) = (vec![], vec![], vec![]);
        for r in 0..o.rounds {
            bare_rounds.push(bare(case, &path, n, o.per_worker)?);
            for (s, rounds) in [
                (Source::Url, &mut url_rounds),
                (Source::Upload, &mut upload_rounds),
            ] {
                let tag = format!("{}-{r}", s.name());
                rounds.push(runtime.block_on(world.processor(
                    case,
                    source_of(s),
                    n,
                    o.per_worker,
                    &tag,
                ))?);
                world.clear_outputs()?;
            }
            eprintln!(
                "service: case {} round {}: bare {:.1}, url {:.1}, upload {:.1} images/s",
                case.id,
                r + 1,
                bare_rounds[r].per_second(),
                url_rounds[r].per_second(),
                upload_rounds[r].per_second(),
            );
        }
        let bare_bytes = bare_rounds.last().map_or(0, |r| r.out_bytes);
        for (side, rounds) in [("url", &url_rounds), ("upload", &upload_rounds)] {
            if let Some(r) = rounds.iter().find(|r| r.out_bytes != bare_bytes) {
                bail!(
                    "case {}: the processor ({side}) made a {}-byte output, the bare engine {bare_bytes}; \
                     they are not doing the same work",
                    case.id,
                    r.out_bytes
                );
            }
        }
        cases.insert(
            case.id.into(),
            json!({
                "label": case.label,
                "out_bytes": bare_bytes,
                "bare": summary(&bare_rounds),
                "url": summary(&url_rounds),
                "upload": summary(&upload_rounds),
            }),
        );
    }
    runtime.block_on(world.stop())?;
    let _ = std::fs::remove_dir_all(&objects);
    Ok(json!({
        "workers": n,
        "per_worker": o.per_worker,
        "warmup": o.warmup,
        "rounds": o.rounds,
        "cases": cases,
    }))
}

/// Median images/s and CPU ms per image over the rounds, and each round's images/s.
fn summary(rounds: &[Round]) -> Value {
    let mut rates: Vec<f64> = rounds.iter().map(Round::per_second).collect();
    let raw = rates.clone();
    rates.sort_by(f64::total_cmp);
    let mut cpu: Vec<f64> = rounds.iter().map(|r| r.cpu_ms / r.images as f64).collect();
    cpu.sort_by(f64::total_cmp);
    json!({
        "images_per_s": round3(median(&rates)),
        "cpu_ms_per_image": round3(median(&cpu)),
        "images_per_round": rounds.first().map_or(0, |r| r.images),
        "rounds_images_per_s": raw.into_iter().map(round3).collect::<Vec<_>>(),
    })
}

/// `n` threads, each reading the file and transforming it `count` times.
fn bare(case: &Case, path: &Path, n: usize, count: usize) -> Result<Round> {
    let cpu_start = cpu_ms();
    let start = Instant::now();
    let results: Vec<Result<u64>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..n)
            .map(|_| {
                scope.spawn(move || {
                    let mut bytes = 0;
                    for _ in 0..count {
                        bytes = run_once(case, path, &mut |_| {})?.bytes as u64;
                    }
                    Ok(bytes)
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err(anyhow!("a bare-engine thread panicked")))
            })
            .collect()
    });
    let seconds = start.elapsed().as_secs_f64();
    let cpu_ms = cpu_ms() - cpu_start;
    let mut out_bytes = 0;
    for r in results {
        out_bytes = r?;
    }
    Ok(Round {
        images: n * count,
        seconds,
        cpu_ms,
        out_bytes,
    })
}

/// The processor, its source server and a connection to it.
struct World {
    processor: atelier_processor::RunningProcessor,
    sources: atelier_testkit::SourceServer,
    channel: Channel,
    objects: PathBuf,
}

impl World {
    async fn start(objects: &Path) -> Result<Self> {
        let storage = objects
            .to_str()
            .ok_or_else(|| anyhow!("{} is not UTF-8", objects.display()))?;
        let mut config = atelier_processor::Config::new(TOKEN, storage);
        config.max_concurrency = u32::try_from(workers())?;
        config.allow_private_sources = vec!["127.0.0.1/32"
            .parse()
            .map_err(|e| anyhow!("allow-list: {e}"))?];
        // Every call runs the engine: identical tasks would otherwise be served from the cache.
        config.content_cache = false;
        let processor = atelier_processor::spawn(config)
            .await
            .map_err(|e| anyhow!("starting the processor: {e}"))?;
        let channel = Endpoint::from_shared(processor.url())?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .connect()
            .await
            .with_context(|| format!("connecting to {}", processor.url()))?;
        Ok(Self {
            processor,
            sources: atelier_testkit::SourceServer::start().await,
            channel,
            objects: objects.to_path_buf(),
        })
    }

    async fn stop(self) -> Result<()> {
        self.processor
            .stop()
            .await
            .map_err(|e| anyhow!("stopping the processor: {e}"))
    }

    fn clear_outputs(&self) -> Result<()> {
        match std::fs::remove_dir_all(self.objects.join(OUTPUTS)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// `n` clients, each calling `Process` `count` times in a row.
    async fn processor(
        &self,
        case: &Case,
        source: v1::source_ref::Source,
        n: usize,
        count: usize,
        tag: &str,
    ) -> Result<Round> {
        let params = v1::JobParams {
            params: Some(v1::job_params::Params::Transform(transform_params(case))),
        };
        let cpu_start = cpu_ms();
        let start = Instant::now();
        let clients: Vec<_> = (0..n)
            .map(|worker| {
                let channel = self.channel.clone();
                let params = params.clone();
                let source = source.clone();
                let prefix = format!("{OUTPUTS}/{}/{tag}/{worker}", case.id);
                let tag = tag.to_string();
                tokio::spawn(async move {
                    let mut bytes = 0;
                    for i in 0..count {
                        let request = v1::ProcessRequest {
                            job_id: format!("bench-{tag}-{worker}-{i}"),
                            task_id: format!("task-{tag}-{worker}-{i}"),
                            tenant_id: "bench".into(),
                            attempt: 1,
                            params: Some(params.clone()),
                            source: Some(v1::SourceRef {
                                source: Some(source.clone()),
                            }),
                            output_prefix: format!("{prefix}/{i}"),
                            account: "bench".into(),
                        };
                        bytes = process(channel.clone(), request).await?;
                    }
                    Ok::<_, anyhow::Error>(bytes)
                })
            })
            .collect();
        let mut out_bytes = 0;
        for client in clients {
            out_bytes = client.await.context("a client task stopped")??;
        }
        let seconds = start.elapsed().as_secs_f64();
        Ok(Round {
            images: n * count,
            seconds,
            cpu_ms: cpu_ms() - cpu_start,
            out_bytes,
        })
    }
}

/// The case's transform as the orchestrator sends it (see `recipe` for the engine's side).
fn transform_params(case: &Case) -> v1::TransformParams {
    let format = match case.format {
        atelier_engine::Format::Jpeg => v1::ImageFormat::Jpeg,
        atelier_engine::Format::Png => v1::ImageFormat::Png,
        atelier_engine::Format::Webp => v1::ImageFormat::Webp,
    };
    v1::TransformParams {
        resize: case.width.map(|width| v1::Resize {
            width,
            height: 0,
            fit: v1::Fit::Inside as i32,
        }),
        format: format as i32,
        quality: u32::from(case.quality),
        lossless: case.lossless,
        ..v1::TransformParams::default()
    }
}

/// One `Process` call read to the end of its stream; returns the main output's size.
async fn process(channel: Channel, message: v1::ProcessRequest) -> Result<u64> {
    let mut client = v1::processor_service_client::ProcessorServiceClient::new(channel);
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("x-api-key", TOKEN.parse().context("service token")?);
    let mut stream = client
        .process(request)
        .await
        .map_err(|s| anyhow!("Process: {s}"))?
        .into_inner();
    let mut bytes = None;
    let mut completed = false;
    while let Some(event) = stream
        .message()
        .await
        .map_err(|s| anyhow!("Process stream: {s}"))?
    {
        match event.event {
            Some(Event::Output(output)) if bytes.is_none() => bytes = Some(output.bytes),
            Some(Event::Completed(c)) if c.from_cache => bail!("served from the content cache"),
            Some(Event::Completed(_)) => completed = true,
            _ => {}
        }
    }
    match (completed, bytes) {
        (true, Some(bytes)) => Ok(bytes),
        _ => bail!("the stream ended without an output and Completed"),
    }
}
