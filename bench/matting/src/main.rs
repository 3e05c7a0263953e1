//! `atelier-bench-matting`: times basic_clean's matting (decode → segmentation model → refinement →
//! matting.png) on real photos with a real IS-Net model, for `make bench-matting`
//! (scripts/bench-matting.sh), which runs the same model through onnxruntime from Python with
//! rembg's pipeline (bench/matting/reference.py) on the same photos in the same run.
//!
//! Subcommands:
//! - `run --photo FILE --name NAME --model FAMILY:PATH --onnxruntime LIB [--runs N] [--warmup N]
//!   [--threads N] --mask-out FILE --raw-mask-out FILE [--png-out FILE]`: loads the model once (as the processor
//!   does at start), runs `basic_clean_with(…, Matting::Segmented …)` end to end on the file, and
//!   prints JSON (median, per-run times, CPU time, the stage split, memory). Writes the alpha of
//!   matting.png and the model's own 1024² mask as greyscale PNGs (and matting.png itself with
//!   `--png-out`).
//! - `report --atelier F... --reference F... --twelve NAME --one NAME --md F --json F
//!   [--meta key=value]...`: merges the
//!   per-photo result files, computes the IoU of the two sides' masks, writes the Markdown and JSON
//!   results, prints the table, the agreement line and, last, the 12 MP ratio line.

mod report;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use atelier_engine::{CleanTemplate, Limits, Matting, SegmentationMask};
use atelier_matting::{ModelSpec, Segmenter};
use serde_json::{json, Value};

/// CPU time of the whole process (every thread, ONNX Runtime's included), in ms.
fn cpu_ms() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    t.tv_sec as f64 * 1000.0 + t.tv_nsec as f64 / 1_000_000.0
}

/// Median (the middle value, or the mean of the two middle ones) of a sorted slice.
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

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// A field of /proc/self/status in MiB (VmRSS, VmHWM).
fn proc_status_mib(field: &str) -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| {
            v.trim_start_matches(':')
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .ok()
        })
        .ok_or_else(|| anyhow!("no {field} in /proc/self/status"))?;
    Ok(round1(kib / 1024.0))
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

/// The stages of one end-to-end run, in order, as the bench reports them.
const STAGES: [&str; 5] = ["read", "decode", "model", "refine_foreground", "encode"];

/// What one run yields besides its time.
struct RunOutput {
    /// matting.png.
    png: Vec<u8>,
    /// Milliseconds per stage (keys of [`STAGES`]).
    stages: BTreeMap<&'static str, f64>,
    /// The model's own mask, when asked for.
    raw_mask: Option<SegmentationMask>,
    /// The model's confidence, as reported on the output.
    confidence: f32,
}

/// One end-to-end run: read the file, basic_clean with the model, matting.png in memory.
///
/// Stage boundaries come from the engine's progress callback and the segment closure: read =
/// fs::read; decode = probe + decode + orientation + RGB (up to "matting" 20); model = the
/// segment closure (resize to 1024², normalise, ONNX Runtime, min-max stretch); refine_foreground
/// = confidence, guided filter at full resolution, blur-fusion foreground colours (up to
/// "matting" 45); encode = matting.png + its thumbnail (up to "done").
fn run_once(path: &Path, segmenter: &Segmenter, keep_raw: bool) -> Result<RunOutput> {
    let marks: RefCell<Vec<(&'static str, Instant)>> = RefCell::new(Vec::with_capacity(8));
    let mark = |name: &'static str| marks.borrow_mut().push((name, Instant::now()));
    let mut raw_mask = None;
    mark("start");
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    mark("read_done");
    let mut segment = |rgb: &image::RgbImage| {
        mark("model_start");
        let mask = segmenter.segment(rgb);
        mark("model_done");
        if keep_raw {
            if let Ok(m) = &mask {
                raw_mask = Some(m.clone());
            }
        }
        mask
    };
    let mut progress = |stage: &str, percent: u32| match (stage, percent) {
        ("matting", 20) => mark("decode_done"),
        ("matting", 45) => mark("refine_done"),
        ("done", _) => mark("encode_done"),
        _ => {}
    };
    let out = atelier_engine::basic_clean_with(
        black_box(&bytes),
        CleanTemplate::Matting,
        Matting::Segmented {
            method: "model",
            model: segmenter.name(),
            min_confidence: 0.0,
            segment: &mut segment,
        },
        &Limits::default(),
        &mut progress,
    )
    .map_err(|e| anyhow!("basic_clean on {}: {e}", path.display()))?;
    mark("end");
    let rendered = out
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("basic_clean made no output"))?;
    let confidence = rendered.matting.as_ref().map_or(f32::NAN, |m| m.confidence);
    let marks = marks.into_inner();
    let at = |name: &str| -> Result<Instant> {
        marks
            .iter()
            .find(|m| m.0 == name)
            .map(|m| m.1)
            .ok_or_else(|| anyhow!("the run reported no {name:?} mark"))
    };
    let ms = |a: Instant, b: Instant| (b - a).as_secs_f64() * 1000.0;
    let mut stages = BTreeMap::new();
    stages.insert("read", ms(at("start")?, at("read_done")?));
    stages.insert("decode", ms(at("read_done")?, at("decode_done")?));
    stages.insert("model", ms(at("model_start")?, at("model_done")?));
    stages.insert(
        "refine_foreground",
        ms(at("model_done")?, at("refine_done")?),
    );
    stages.insert("encode", ms(at("refine_done")?, at("end")?));
    Ok(RunOutput {
        png: rendered.data,
        stages,
        raw_mask,
        confidence,
    })
}

/// The alpha channel of an encoded RGBA PNG, as a greyscale PNG file.
fn write_alpha(png: &[u8], out: &Path) -> Result<(u32, u32)> {
    let rgba = image::load_from_memory(png)
        .context("decoding matting.png")?
        .into_rgba8();
    let (w, h) = rgba.dimensions();
    let alpha = image::GrayImage::from_fn(w, h, |x, y| image::Luma([rgba.get_pixel(x, y).0[3]]));
    alpha
        .save(out)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok((w, h))
}

/// The model's mask as 8-bit grey, truncated as rembg does (`(pred * 255).astype(uint8)`).
fn write_raw_mask(mask: &SegmentationMask, out: &Path) -> Result<()> {
    let grey: Vec<u8> = mask.values.iter().map(|v| (v * 255.0) as u8).collect();
    image::GrayImage::from_raw(mask.width, mask.height, grey)
        .ok_or_else(|| anyhow!("mask size mismatch"))?
        .save(out)
        .with_context(|| format!("writing {}", out.display()))
}

struct RunOptions {
    photo: PathBuf,
    name: String,
    model: ModelSpec,
    onnxruntime: PathBuf,
    runs: usize,
    warmup: usize,
    threads: usize,
    mask_out: PathBuf,
    raw_mask_out: PathBuf,
    /// Where to keep the last run's matting.png, if anywhere.
    png_out: Option<PathBuf>,
}

fn cmd_run(o: &RunOptions) -> Result<Value> {
    let rss_start = proc_status_mib("VmRSS")?;
    let t = Instant::now();
    atelier_matting::load_runtime(&o.onnxruntime).map_err(|e| anyhow!("{e}"))?;
    let rss_runtime = proc_status_mib("VmRSS")?;
    // One session of `threads` intra-op threads (inter-op 1), as the reference configures its own.
    let segmenter = Segmenter::load(&o.model, 1, o.threads).map_err(|e| anyhow!("{e}"))?;
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let rss_model = proc_status_mib("VmRSS")?;
    eprintln!(
        "atelier: {} ({}), {} warm-up + {} runs, {} intra-op threads",
        o.name,
        o.photo.display(),
        o.warmup,
        o.runs,
        o.threads
    );
    let mut raw = None;
    for i in 0..o.warmup {
        let out = run_once(&o.photo, &segmenter, i == 0)?;
        raw = raw.or(out.raw_mask);
    }
    let mut times = Vec::with_capacity(o.runs);
    let mut stages: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut last = None;
    let cpu_start = cpu_ms();
    for i in 0..o.runs {
        let keep_raw = raw.is_none() && i + 1 == o.runs;
        let start = Instant::now();
        let out = run_once(&o.photo, &segmenter, keep_raw)?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        for (k, v) in &out.stages {
            stages.entry(k).or_default().push(*v);
        }
        raw = raw.or(out.raw_mask.clone());
        last = Some(out);
    }
    let cpu_per_run = (cpu_ms() - cpu_start) / o.runs.max(1) as f64;
    let last = last.ok_or_else(|| anyhow!("--runs must be at least 1"))?;
    let raw = raw.ok_or_else(|| anyhow!("the model's mask was not captured"))?;
    let (w, h) = write_alpha(&last.png, &o.mask_out)?;
    if let Some(path) = &o.png_out {
        std::fs::write(path, &last.png).with_context(|| format!("writing {}", path.display()))?;
    }
    write_raw_mask(&raw, &o.raw_mask_out)?;
    let raw_times = times.clone();
    times.sort_by(f64::total_cmp);
    let split: serde_json::Map<String, Value> = STAGES
        .iter()
        .map(|s| {
            let mut v = stages.get(s).cloned().unwrap_or_default();
            v.sort_by(f64::total_cmp);
            (s.to_string(), json!(round1(median(&v))))
        })
        .collect();
    Ok(json!({
        "tool": "atelier",
        "name": o.name,
        "photo": o.photo,
        "width": w,
        "height": h,
        "model": o.model.name,
        "model_path": o.model.path,
        "threads": { "intra_op": o.threads, "inter_op": 1 },
        "runs": o.runs,
        "warmup": o.warmup,
        "median_ms": round1(median(&times)),
        "min_ms": round1(times.first().copied().unwrap_or(f64::NAN)),
        "times_ms": raw_times.into_iter().map(round1).collect::<Vec<_>>(),
        "cpu_ms_per_run": round1(cpu_per_run),
        "stages_median_ms": split,
        "output_bytes": last.png.len(),
        "confidence": last.confidence,
        "model_load_ms": round1(load_ms),
        "rss_start_mib": rss_start,
        "rss_after_runtime_mib": rss_runtime,
        "rss_after_model_mib": rss_model,
        "peak_rss_mib": proc_status_mib("VmHWM")?,
        "mask": o.mask_out,
        "raw_mask": o.raw_mask_out,
        "cpu": cpu_model(),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    }))
}

/// `--name value` pairs; `--meta`, `--atelier` and `--reference` may repeat.
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
        if matches!(name, "meta" | "atelier" | "reference") {
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
        bail!("usage: atelier-bench-matting run|report [--flag value]...");
    };
    let (flags, repeated) = parse_flags(rest)?;
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
    let list = |name: &str| -> Vec<PathBuf> {
        repeated
            .get(name)
            .map(|v| v.iter().map(PathBuf::from).collect())
            .unwrap_or_default()
    };
    match command.as_str() {
        "run" => {
            let value = cmd_run(&RunOptions {
                photo: PathBuf::from(get("photo")?),
                name: get("name")?,
                model: get("model")?.parse().map_err(|e: String| anyhow!(e))?,
                onnxruntime: PathBuf::from(get("onnxruntime")?),
                runs: num("runs", 5)?,
                warmup: num("warmup", 1)?,
                threads: num("threads", 2)?,
                mask_out: PathBuf::from(get("mask-out")?),
                raw_mask_out: PathBuf::from(get("raw-mask-out")?),
                png_out: flags.get("png-out").map(PathBuf::from),
            })?;
            println!("{}", serde_json::to_string_pretty(&value)?);
        }
        "report" => {
            let (atelier, reference) = (list("atelier"), list("reference"));
            let (twelve, one) = (get("twelve")?, get("one")?);
            let (md, json) = (PathBuf::from(get("md")?), PathBuf::from(get("json")?));
            let lines = report::write(&report::Options {
                atelier: &atelier,
                reference: &reference,
                twelve: &twelve,
                one: &one,
                md: &md,
                json: &json,
                meta: repeated.get("meta").map_or(&[][..], Vec::as_slice),
            })?;
            // The agreement line, then the ratio lines; the 12 MP ratio is the very last line.
            for line in lines {
                println!("{line}");
            }
        }
        other => bail!("unknown command {other:?}; use run or report"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), 2.0);
        assert_eq!(median(&[1.0, 2.0, 3.0, 4.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
