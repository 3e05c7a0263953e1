//! `atelier-bench-engine`: times `atelier_engine::transform` on generated images, for
//! `make bench-engine` (scripts/bench-engine.sh), which runs the libvips and Pillow references
//! (bench/engine/reference.py) on the same files in the same run.
//!
//! Subcommands:
//! - `gen --dir DIR`: writes the deterministic inputs (if missing) and prints them as JSON.
//! - `run --dir DIR [--cases A,B,B_lossless,C,D] [--runs N] [--warmup N] [--big-runs N] [--big-warmup N]`:
//!   times the cases and prints JSON (median, p90, CPU time, per-run times, peak RSS of a separate
//!   child run per case, and for A the phase split from the engine's progress callback). The
//!   script runs one case at a time, each right before the references run the same case.
//! - `child --dir DIR --case X`: runs case X once and prints its peak RSS (VmHWM); used by `run`.
//! - `micro --dir DIR [--runs N]`: the codec building blocks of cases A and C timed on their own.
//! - `service --dir DIR --objects DIR [--cases A,C] [--images N] [--warmup N] [--rounds N]`: the
//!   processor service at full load (one gRPC client per core, sources over HTTP and from uploads)
//!   against the bare engine at full load (one thread per core), in images per second (service.rs).
//! - `decoder`: prints which decoder serves DCT-scaled JPEG decodes in this build.
//! - `report --ours F... --refs F... [--pure F...] --micro F [--service F] --md F --json F [--meta key=value]...`:
//!   merges the result files (`--pure`: the default pure-Rust build's runs when the benchmarked build
//!   has a feature on), writes the Markdown and JSON results, prints the table and, last, the ratio
//!   line.

mod images;
mod micro;
mod report;
mod service;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use atelier_engine::{Fit, Format, Limits, Resize, TransformRecipe};
use serde_json::{json, Value};

/// One timed operation.
struct Case {
    /// "A", "B", "B_lossless", "C" or "D".
    id: &'static str,
    /// What it does, for the tables.
    label: &'static str,
    /// Which generated input it reads.
    input: &'static str,
    /// Output width (fit inside, height from the aspect ratio); None keeps the size.
    width: Option<u32>,
    /// Output format.
    format: Format,
    /// Output quality; the references are given the same (bench/engine/reference.py).
    quality: u8,
    /// Lossless WebP.
    lossless: bool,
    /// True for the 50 MP case, which runs fewer times.
    big: bool,
}

const CASES: [Case; 5] = [
    Case {
        id: "A",
        label: "12 MP JPEG → 512 px JPEG q85",
        input: "photo12",
        width: Some(512),
        format: Format::Jpeg,
        quality: 85,
        lossless: false,
        big: false,
    },
    Case {
        id: "B",
        label: "12 MP JPEG → 2048 px WebP q75",
        input: "photo12",
        width: Some(2048),
        format: Format::Webp,
        quality: 75,
        lossless: false,
        big: false,
    },
    Case {
        id: "B_lossless",
        label: "12 MP JPEG → 2048 px lossless WebP",
        input: "photo12",
        width: Some(2048),
        format: Format::Webp,
        quality: 75,
        lossless: true,
        big: false,
    },
    Case {
        id: "C",
        label: "1024² RGBA PNG → JPEG q85 on white",
        input: "rgba",
        width: None,
        format: Format::Jpeg,
        quality: 85,
        lossless: false,
        big: false,
    },
    Case {
        id: "D",
        label: "50 MP JPEG → 512 px JPEG q85",
        input: "photo50",
        width: Some(512),
        format: Format::Jpeg,
        quality: 85,
        lossless: false,
        big: true,
    },
];

fn recipe(case: &Case) -> TransformRecipe {
    TransformRecipe {
        resize: case.width.map(|width| Resize {
            width,
            height: 0,
            fit: Fit::Inside,
        }),
        format: Some(case.format),
        quality: case.quality,
        lossless: case.lossless,
        ..TransformRecipe::default()
    }
}

fn find_case(id: &str) -> Result<&'static Case> {
    CASES
        .iter()
        .find(|c| c.id == id)
        .ok_or_else(|| anyhow!("unknown case {id:?}; use A, B, B_lossless, C or D"))
}

fn input_path(dir: &Path, key: &str) -> Result<PathBuf> {
    images::inputs(dir)
        .into_iter()
        .find(|i| i.key == key)
        .map(|i| i.path)
        .ok_or_else(|| anyhow!("no input named {key}"))
}

/// What one run produced, besides its time.
struct Output {
    width: u32,
    height: u32,
    bytes: usize,
}

/// Reads the file and transforms it once (the file read is timed too, as the references open the
/// path themselves). Calls `stage(name)` at each progress report.
fn run_once(case: &Case, path: &Path, stage: &mut dyn FnMut(&str)) -> Result<Output> {
    stage("read");
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut progress = |name: &str, _percent: u32| stage(name);
    let out = atelier_engine::transform(
        black_box(&bytes),
        &recipe(case),
        &Limits::default(),
        &mut progress,
    )
    .map_err(|e| anyhow!("case {}: {e}", case.id))?;
    let first = out
        .first()
        .ok_or_else(|| anyhow!("case {}: no output", case.id))?;
    Ok(black_box(Output {
        width: first.width,
        height: first.height,
        bytes: first.data.len(),
    }))
}

/// CPU time of the whole process (every thread, including threads that have ended), in ms.
fn cpu_ms() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 * 1000.0 + t.tv_nsec as f64 / 1_000_000.0
}

/// Median (the middle value, or the mean of the two middle ones).
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Peak resident set size of this process so far, in KiB.
fn vm_hwm_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow!("no VmHWM in /proc/self/status"))
}

/// Runs `child` for one case in a fresh process and returns its peak RSS in MiB.
fn child_peak_mib(dir: &Path, id: &str) -> Result<f64> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .arg("child")
        .arg("--dir")
        .arg(dir)
        .arg("--case")
        .arg(id)
        .output()?;
    if !out.status.success() {
        bail!(
            "child run of case {id} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: Value = serde_json::from_slice(&out.stdout)?;
    let kib = v["vm_hwm_kib"]
        .as_u64()
        .ok_or_else(|| anyhow!("child printed no vm_hwm_kib"))?;
    Ok(round3(kib as f64 / 1024.0))
}

struct Options {
    dir: PathBuf,
    runs: usize,
    warmup: usize,
    big_runs: usize,
    big_warmup: usize,
    /// Case ids to time (A, B, B_lossless, C, D).
    cases: Vec<String>,
}

fn cmd_run(o: &Options) -> Result<Value> {
    images::generate(&o.dir)?;
    let mut cases = serde_json::Map::new();
    let mut phases: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for id in &o.cases {
        let case = find_case(id)?;
        let path = input_path(&o.dir, case.input)?;
        let (runs, warmup) = if case.big {
            (o.big_runs, o.big_warmup)
        } else {
            (o.runs, o.warmup)
        };
        eprintln!(
            "atelier: case {} ({}), {warmup} warm-up + {runs} runs",
            case.id, case.label
        );
        for _ in 0..warmup {
            run_once(case, &path, &mut |_| {})?;
        }
        let mut times = Vec::with_capacity(runs);
        let mut last = None;
        let cpu_start = cpu_ms();
        for _ in 0..runs {
            let mut marks: Vec<(String, Instant)> = Vec::with_capacity(8);
            let start = Instant::now();
            let out = run_once(case, &path, &mut |s| {
                marks.push((s.to_string(), Instant::now()))
            })?;
            let end = Instant::now();
            times.push((end - start).as_secs_f64() * 1000.0);
            if case.id == "A" {
                marks.push(("end".into(), end));
                for pair in marks.windows(2) {
                    let ms = (pair[1].1 - pair[0].1).as_secs_f64() * 1000.0;
                    phases.entry(pair[0].0.clone()).or_default().push(ms);
                }
            }
            last = Some(out);
        }
        let cpu_per_run = (cpu_ms() - cpu_start) / runs.max(1) as f64;
        let out = last.ok_or_else(|| anyhow!("case {} ran zero times", case.id))?;
        let raw = times.clone();
        times.sort_by(f64::total_cmp);
        let peak = child_peak_mib(&o.dir, case.id)?;
        cases.insert(
            case.id.into(),
            json!({
                "label": case.label,
                "runs": runs,
                "warmup": warmup,
                "median_ms": round3(median(&times)),
                "p90_ms": round3(percentile(&times, 90.0)),
                "min_ms": round3(times[0]),
                "cpu_ms_per_run": round3(cpu_per_run),
                "times_ms": raw.into_iter().map(round3).collect::<Vec<_>>(),
                "peak_mib": peak,
                "out_width": out.width,
                "out_height": out.height,
                "out_bytes": out.bytes,
            }),
        );
    }
    // Phase split of case A: the time from each progress stage to the next, median over the runs.
    let order = [
        "read", "decode", "orient", "crop", "resize", "encode", "done",
    ];
    let mut split = Vec::new();
    for name in order {
        if let Some(v) = phases.get_mut(name) {
            v.sort_by(f64::total_cmp);
            split.push(json!({ "stage": name, "median_ms": round3(median(v)) }));
        }
    }
    let mut result = json!({
        "tool": "atelier-engine",
        "jpeg_scaled_decoder": atelier_engine::scaled_jpeg_decoder(),
        "threads": 1,
        "cpu": cpu_model(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "baseline_peak_mib": child_peak_mib(&o.dir, "none")?,
        "cases": cases,
    });
    if !split.is_empty() {
        result["phases_a"] = json!(split);
        result["phase_notes"] = json!(
            "From the engine's progress callback: read = fs::read; decode = one header walk \
             (probe, EXIF, ICC, end-of-image check) + (scaled) decode; orient = EXIF orientation; resize = fast_image_resize; encode = flatten (if \
             alpha) + encode + the 256 px thumbnail every output carries; done = return."
        );
    }
    Ok(result)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn cmd_child(dir: &Path, id: &str) -> Result<Value> {
    if id != "none" {
        let case = find_case(id)?;
        let path = input_path(dir, case.input)?;
        run_once(case, &path, &mut |_| {})?;
    }
    Ok(json!({ "case": id, "vm_hwm_kib": vm_hwm_kib()? }))
}

/// `--name value` pairs; `--meta`, `--ours`, `--refs` and `--pure` may repeat (collected in the second map).
type Flags = (BTreeMap<String, String>, BTreeMap<String, Vec<String>>);

fn parse_flags(args: &[String]) -> Result<Flags> {
    let mut flags = BTreeMap::new();
    let mut repeated: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let name = a
            .strip_prefix("--")
            .ok_or_else(|| anyhow!("unexpected argument {a:?}"))?;
        let value = it
            .next()
            .ok_or_else(|| anyhow!("--{name} needs a value"))?
            .clone();
        if matches!(name, "meta" | "ours" | "refs" | "pure") {
            repeated.entry(name.to_string()).or_default().push(value);
        } else {
            flags.insert(name.to_string(), value);
        }
    }
    Ok((flags, repeated))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((command, rest)) = args.split_first() else {
        bail!(
            "usage: atelier-bench-engine gen|run|child|micro|service|decoder|report [--flag value]..."
        );
    };
    if command == "decoder" {
        println!("{}", atelier_engine::scaled_jpeg_decoder());
        return Ok(());
    }
    let (flags, repeated) = parse_flags(rest)?;
    let list = |name: &str| -> Vec<PathBuf> {
        repeated
            .get(name)
            .map(|v| v.iter().map(PathBuf::from).collect())
            .unwrap_or_default()
    };
    let meta = repeated.get("meta").cloned().unwrap_or_default();
    let get = |name: &str| {
        flags
            .get(name)
            .cloned()
            .ok_or_else(|| anyhow!("--{name} is required"))
    };
    let num = |name: &str, default: usize| -> Result<usize> {
        flags
            .get(name)
            .map(|v| v.parse().with_context(|| format!("--{name} {v}")))
            .unwrap_or(Ok(default))
    };
    let value = match command.as_str() {
        "gen" => {
            let dir = PathBuf::from(get("dir")?);
            images::generate(&dir)?;
            let list: serde_json::Map<String, Value> = images::inputs(&dir)
                .into_iter()
                .map(|i| {
                    (
                        i.key.to_string(),
                        json!({ "path": i.path, "width": i.width, "height": i.height }),
                    )
                })
                .collect();
            Value::Object(list)
        }
        "run" => cmd_run(&Options {
            dir: PathBuf::from(get("dir")?),
            runs: num("runs", 15)?,
            warmup: num("warmup", 2)?,
            big_runs: num("big-runs", 5)?,
            big_warmup: num("big-warmup", 1)?,
            cases: flags
                .get("cases")
                .map_or("A,B,B_lossless,C,D", String::as_str)
                .split(',')
                .map(str::to_string)
                .collect(),
        })?,
        "child" => cmd_child(Path::new(&get("dir")?), &get("case")?)?,
        "micro" => {
            let dir = PathBuf::from(get("dir")?);
            images::generate(&dir)?;
            micro::run(
                &input_path(&dir, "photo12")?,
                &input_path(&dir, "rgba")?,
                num("runs", 15)?,
            )?
        }
        "service" => service::run(&service::Options {
            dir: PathBuf::from(get("dir")?),
            objects: PathBuf::from(get("objects")?),
            cases: flags
                .get("cases")
                .map_or("A", String::as_str)
                .split(',')
                .map(str::to_string)
                .collect(),
            per_worker: num("images", 20)?,
            warmup: num("warmup", 2)?,
            rounds: num("rounds", 3)?,
        })?,
        "report" => {
            let line = report::write(
                &list("ours"),
                &list("refs"),
                &list("pure"),
                Path::new(&get("micro")?),
                flags.get("service").map(Path::new),
                Path::new(&get("md")?),
                Path::new(&get("json")?),
                &meta,
            )?;
            // The ratio line is the very last thing printed.
            println!("{line}");
            return Ok(());
        }
        other => bail!(
            "unknown command {other:?}; use gen, run, child, micro, service, decoder or report"
        ),
    };
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_p90() {
        let v: Vec<f64> = (1..=15).map(f64::from).collect();
        assert_eq!(median(&v), 8.0);
        assert_eq!(percentile(&v, 90.0), 14.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), 2.5);
    }

    #[test]
    fn the_generated_images_are_busy_and_deterministic() {
        let a = images::photo(64, 48);
        assert_eq!(a, images::photo(64, 48));
        let distinct: std::collections::HashSet<_> = a.chunks(3).collect();
        assert!(distinct.len() > 1000, "{} colours", distinct.len());
        let rgba = images::rgba(64, 64);
        let alphas: std::collections::HashSet<u8> = rgba.chunks(4).map(|p| p[3]).collect();
        assert!(alphas.contains(&0) && alphas.contains(&255) && alphas.len() > 10);
    }
}
