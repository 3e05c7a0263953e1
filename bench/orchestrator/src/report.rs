//! The result table: Atelier next to graphile-worker, written as Markdown and JSON. The last line
//! printed is the throughput ratio.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use serde_json::{json, Value};

/// Inputs and outputs of `report`.
#[derive(Args, Clone, Debug)]
pub struct ReportArgs {
    /// JSON written by `run`.
    #[arg(long)]
    pub atelier: PathBuf,
    /// JSON written by graphile.js.
    #[arg(long)]
    pub graphile: PathBuf,
    /// Markdown result file to write.
    #[arg(long)]
    pub markdown: PathBuf,
    /// JSON result file to write.
    #[arg(long)]
    pub json: PathBuf,
    /// Date of the run, for the heading.
    #[arg(long, default_value = "")]
    pub date: String,
    /// Commit measured, for the heading.
    #[arg(long, default_value = "")]
    pub commit: String,
    /// A line describing the machine.
    #[arg(long, default_value = "")]
    pub machine: String,
}

struct Row {
    metric: String,
    atelier: Option<f64>,
    graphile: Option<f64>,
    /// Shown instead of a number.
    atelier_text: Option<String>,
    graphile_text: Option<String>,
    decimals: usize,
}

impl Row {
    fn compared(
        metric: &str,
        atelier: Option<f64>,
        graphile: Option<f64>,
        decimals: usize,
    ) -> Self {
        Self {
            metric: metric.into(),
            atelier,
            graphile,
            atelier_text: None,
            graphile_text: None,
            decimals,
        }
    }

    fn only_atelier(metric: &str, atelier: Option<f64>, decimals: usize) -> Self {
        Self {
            graphile_text: Some("n/a".into()),
            ..Self::compared(metric, atelier, None, decimals)
        }
    }

    fn text(metric: &str, atelier: String, graphile: String) -> Self {
        Self {
            atelier_text: Some(atelier),
            graphile_text: Some(graphile),
            ..Self::compared(metric, None, None, 0)
        }
    }

    fn cell(&self, value: Option<f64>, text: &Option<String>) -> String {
        match (text, value) {
            (Some(t), _) => t.clone(),
            (None, Some(v)) => format!("{v:.*}", self.decimals),
            (None, None) => "–".into(),
        }
    }

    fn ratio(&self) -> Option<f64> {
        match (self.atelier, self.graphile) {
            (Some(a), Some(g)) if g > 0.0 => Some(a / g),
            _ => None,
        }
    }
}

fn num(v: &Value, pointer: &str) -> Option<f64> {
    v.pointer(pointer).and_then(Value::as_f64)
}

fn read(path: &PathBuf) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn rows(a: &Value, g: &Value) -> Vec<Row> {
    let mut rows = vec![
        Row::compared(
            "End-to-end throughput, first submit to last completion (tasks/s)",
            num(a, "/completion/tasks_per_second"),
            num(g, "/jobs_per_second"),
            1,
        ),
        Row::compared(
            "Dispatch rate, first submit to last start (tasks/s)",
            num(a, "/completion/dispatched_per_second"),
            num(g, "/started_per_second"),
            1,
        ),
        Row::compared(
            "Submit throughput under load (jobs/s)",
            num(a, "/submit/per_second"),
            num(g, "/add/per_second"),
            1,
        ),
        Row::compared(
            "Submit latency p50 under load (ms)",
            num(a, "/submit/p50_ms"),
            num(g, "/add/p50_ms"),
            2,
        ),
        Row::compared(
            "Submit latency p99 under load (ms)",
            num(a, "/submit/p99_ms"),
            num(g, "/add/p99_ms"),
            2,
        ),
        Row::compared(
            "Submit-to-completion latency p50 (ms)",
            num(a, "/completion/latency_p50_ms"),
            num(g, "/latency_p50_ms"),
            1,
        ),
        Row::compared(
            "Submit-to-completion latency p99 (ms)",
            num(a, "/completion/latency_p99_ms"),
            num(g, "/latency_p99_ms"),
            1,
        ),
        Row::compared(
            "PostgreSQL transactions per task",
            num(a, "/completion/db_commits_per_task"),
            num(g, "/db_commits_per_job"),
            2,
        ),
        Row::compared(
            "PostgreSQL rows written per task, in the system's own tables",
            num(a, "/completion/db_table_rows_written_per_task"),
            num(g, "/db_table_rows_written_per_job"),
            2,
        ),
        Row::compared(
            "PostgreSQL rows written per task, system catalogs included",
            num(a, "/completion/db_rows_written_per_task"),
            num(g, "/db_rows_written_per_job"),
            2,
        ),
        Row::compared(
            "Drain: jobs queued first, then run by one fresh worker (tasks/s)",
            num(a, "/drain/tasks_per_second"),
            num(g, "/drain/jobs_per_second"),
            1,
        ),
    ];
    if a.pointer("/real").is_some_and(|r| !r.is_null()) {
        rows.extend([
            Row::compared(
                "Real transforms: end-to-end throughput (tasks/s)",
                num(a, "/real/completion/tasks_per_second"),
                num(g, "/jobs_per_second"),
                1,
            ),
            Row::compared(
                "Real transforms: submit latency p99 (ms)",
                num(a, "/real/submit/p99_ms"),
                num(g, "/add/p99_ms"),
                2,
            ),
            Row::compared(
                "Real transforms: PostgreSQL transactions per task",
                num(a, "/real/completion/db_commits_per_task"),
                num(g, "/db_commits_per_job"),
                1,
            ),
            Row::compared(
                "Real transforms: PostgreSQL rows written per task",
                num(a, "/real/completion/db_rows_written_per_task"),
                num(g, "/db_rows_written_per_job"),
                1,
            ),
        ]);
    }
    if a.pointer("/spread").is_some_and(|s| !s.is_null()) {
        let accounts = num(a, "/spread/accounts").unwrap_or(0.0);
        rows.extend([
            Row::compared(
                &format!("End-to-end throughput, clients over {accounts} accounts (tasks/s)"),
                num(a, "/spread/completion/tasks_per_second"),
                num(g, "/jobs_per_second"),
                1,
            ),
            Row::compared(
                &format!("Submit throughput, clients over {accounts} accounts (jobs/s)"),
                num(a, "/spread/submit/per_second"),
                num(g, "/add/per_second"),
                1,
            ),
            Row::compared(
                &format!("Submit latency p99, clients over {accounts} accounts (ms)"),
                num(a, "/spread/submit/p99_ms"),
                num(g, "/add/p99_ms"),
                2,
            ),
        ]);
    }
    rows.extend([
        Row::text(
            "Completed / failed",
            format!(
                "{} / {}",
                num(a, "/completion/succeeded").unwrap_or(0.0),
                num(a, "/completion/failed").unwrap_or(0.0)
            ),
            format!(
                "{} / {}",
                num(g, "/completed").unwrap_or(0.0),
                num(g, "/failed").unwrap_or(0.0)
            ),
        ),
        Row::only_atelier(
            "Task run time p50, attempt start to recorded finish (ms)",
            num(a, "/completion/run_p50_ms"),
            1,
        ),
        Row::only_atelier(
            "Stored events per job",
            num(a, "/completion/events_per_job"),
            1,
        ),
    ]);
    if a.pointer("/watch").is_some_and(|w| !w.is_null()) {
        rows.extend([
            Row::text(
                "WatchJob streams open on one replica",
                format!(
                    "{} of {}",
                    num(a, "/watch/still_open").unwrap_or(0.0),
                    num(a, "/watch/requested").unwrap_or(0.0)
                ),
                "n/a (no streaming API)".into(),
            ),
            Row::only_atelier(
                "Replica RSS growth for those streams (MiB)",
                num(a, "/watch/rss_delta_mib"),
                1,
            ),
            Row::only_atelier(
                "Replica RSS per stream (KiB)",
                num(a, "/watch/kib_per_stream"),
                1,
            ),
            Row::only_atelier(
                "Replica RSS with the streams open (MiB)",
                num(a, "/watch/rss_after_mib"),
                1,
            ),
            Row::only_atelier(
                "Time to open the streams (s)",
                num(a, "/watch/open_seconds"),
                1,
            ),
            Row::only_atelier(
                "Replica CPU while the streams idle (% of one core)",
                num(a, "/watch/idle_replica_cpu_percent"),
                1,
            ),
            Row::only_atelier(
                "Machine CPU while the streams idle (% of all cores)",
                num(a, "/watch/idle_machine_cpu_percent"),
                1,
            ),
        ]);
    }
    rows
}

fn table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| metric | Atelier | graphile-worker | ratio |\n| --- | ---: | ---: | ---: |\n",
    );
    for row in rows {
        let ratio = row.ratio().map(|r| format!("{r:.2}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.metric,
            row.cell(row.atelier, &row.atelier_text),
            row.cell(row.graphile, &row.graphile_text),
            ratio
        );
    }
    out
}

/// Writes both result files, prints the table, and prints the ratio line last.
pub fn write(args: &ReportArgs) -> anyhow::Result<()> {
    let a = read(&args.atelier)?;
    let g = read(&args.graphile)?;
    let rows = rows(&a, &g);
    let ratio = rows.first().and_then(Row::ratio).unwrap_or(0.0);
    let drain_ratio = rows
        .iter()
        .find(|r| r.metric.starts_with("Drain:"))
        .and_then(Row::ratio);
    let table = table(&rows);

    let mut md = String::new();
    let _ = writeln!(md, "# Orchestrator benchmark {}\n", args.date);
    if !args.commit.is_empty() {
        let _ = writeln!(md, "Commit: `{}`  ", args.commit);
    }
    if !args.machine.is_empty() {
        let _ = writeln!(md, "Machine: {}  ", args.machine);
    }
    let _ = writeln!(
        md,
        "Load: {} trivial jobs from {} concurrent clients on one PostgreSQL; Atelier dispatch \
         concurrency {}, processor concurrency {}; graphile-worker {} with concurrency {}.\n",
        num(&a, "/config/jobs").unwrap_or(0.0),
        num(&a, "/config/clients").unwrap_or(0.0),
        num(&a, "/config/dispatch_concurrency").unwrap_or(0.0),
        num(&a, "/config/processor_concurrency").unwrap_or(0.0),
        g.pointer("/version").and_then(Value::as_str).unwrap_or("?"),
        num(&g, "/concurrency").unwrap_or(0.0),
    );
    md.push_str(&table);
    let history = history_section(&a);
    if let Some(section) = &history {
        md.push('\n');
        md.push_str(section);
    }
    let _ = writeln!(
        md,
        "\nRatio = Atelier ÷ graphile-worker: above 1 is better for rates, below 1 is better for \
         latencies and costs.\n\n\
         How it is measured: both systems run against the same PostgreSQL, each on a fresh \
         database, one after the other. The headline run submits every job as one account while \
         one replica dispatches (graphile-worker: `addJob` from the same number of clients while \
         its worker runs); throughput is tasks completed from the first submit to the last \
         completion, read from the tasks' stored timestamps. The rows \"over N accounts\" repeat it \
         with the clients spread over N accounts (SubmitJob locks the account row). The drain row \
         queues every job through an API-only replica first, then starts one dispatching replica \
         and times it until the last task finishes (graphile-worker: add all, then start a \
         worker). Database costs are pg_stat_database deltas over the run.\n\n\
         The headline rows compare equal work. A graphile-worker job runs an empty task function; \
         an Atelier task there goes to a bench-only processor that answers at once over the real \
         gRPC protocol (accepted, one output, completed) without storing anything, so the rows \
         measure the orchestrator: submit, claim, call, record. The orchestrator records every \
         state change and output as stored events; progress is live-only and kept as the task's \
         latest stage. The rows \"Real transforms\" run the same load through the real processor, \
         which downloads the testkit's 640x480 JPEG from a local HTTP server, decodes, resizes to \
         at most 79 px wide, encodes a JPEG, stores it and reports it. Watch streams are held on a \
         separate API-only replica process (dispatch concurrency 0) whose jobs stay queued; its \
         memory is read from /proc/<pid>/status before and after opening them, and its CPU over \
         10 s while they sit idle. Other work on the machine during the run adds noise; compare \
         runs on a quiet machine.\n"
    );
    if let Some(drain) = drain_ratio {
        let _ = writeln!(
            md,
            "orchestrator drain ratio vs graphile-worker: {drain:.2}\n"
        );
    }
    let _ = writeln!(
        md,
        "orchestrator throughput ratio vs graphile-worker: {ratio:.2}"
    );
    std::fs::write(&args.markdown, &md)
        .with_context(|| format!("writing {}", args.markdown.display()))?;

    let result = json!({
        "date": args.date,
        "commit": args.commit,
        "machine": args.machine,
        "throughput_ratio": (ratio * 100.0).round() / 100.0,
        "drain_ratio": drain_ratio.map(|r| (r * 100.0).round() / 100.0),
        "atelier": a,
        "graphile_worker": g,
    });
    std::fs::write(&args.json, serde_json::to_string_pretty(&result)?)
        .with_context(|| format!("writing {}", args.json.display()))?;

    println!("\n{table}");
    if let Some(section) = &history {
        println!("{section}");
    }
    println!(
        "results: {} and {}",
        args.markdown.display(),
        args.json.display()
    );
    if let Some(drain) = drain_ratio {
        println!("orchestrator drain ratio vs graphile-worker: {drain:.2}");
    }
    println!("orchestrator throughput ratio vs graphile-worker: {ratio:.2}");
    Ok(())
}

/// `n` with thousands separated by commas.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The history measurement (issue 16): each figure on an empty database next to the same on one
/// with the finished jobs, and their ratio. `None` when the run skipped it.
fn history_section(a: &Value) -> Option<String> {
    let h = a.pointer("/history").filter(|h| !h.is_null())?;
    let jobs = thousands(
        h.pointer("/finished_jobs")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    );
    let mut rows: Vec<(String, Option<f64>, Option<f64>, usize)> = vec![
        (
            "Submit latency p50 (ms)".into(),
            num(h, "/empty/submit/p50_ms"),
            num(h, "/history/submit/p50_ms"),
            2,
        ),
        (
            "Submit latency p99 (ms)".into(),
            num(h, "/empty/submit/p99_ms"),
            num(h, "/history/submit/p99_ms"),
            2,
        ),
    ];
    let empty = h.pointer("/empty/statements").and_then(Value::as_array);
    let full = h.pointer("/history/statements").and_then(Value::as_array);
    if let (Some(empty), Some(full)) = (empty, full) {
        for (e, f) in empty.iter().zip(full) {
            let name = e.pointer("/name").and_then(Value::as_str).unwrap_or("?");
            for q in ["p50", "p99"] {
                rows.push((
                    format!("{name}: {q} (ms)"),
                    num(e, &format!("/{q}_ms")),
                    num(f, &format!("/{q}_ms")),
                    3,
                ));
            }
        }
    }
    rows.push((
        "Drain of the queued jobs by a fresh dispatching replica (tasks/s)".into(),
        num(h, "/empty/drain_tasks_per_second"),
        num(h, "/history/drain_tasks_per_second"),
        1,
    ));
    let cell = |v: Option<f64>, decimals: usize| {
        v.map_or_else(|| "–".to_string(), |v| format!("{v:.decimals$}"))
    };
    let mut out = format!(
        "## History does not slow the present\n\n\
         | metric | empty database | with {jobs} finished jobs | ratio (history ÷ empty) |\n\
         | --- | ---: | ---: | ---: |\n"
    );
    for (metric, e, f, decimals) in &rows {
        let ratio = match (e, f) {
            (Some(e), Some(f)) if *e > 0.0 => format!("{:.2}", f / e),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "| {metric} | {} | {} | {ratio} |",
            cell(*e, *decimals),
            cell(*f, *decimals)
        );
    }
    let _ = writeln!(
        out,
        "\nFilling {jobs} finished jobs (each with its task, three events and its ledger charge; \
         a tenth of them the measured account's, the rest over 2,000 accounts of 50 tenants; ids \
         time-ordered UUIDv7 as the orchestrator makes them) took {:.1} s, VACUUM ANALYZE {:.1} s. \
         Each side is a fresh database, checkpointed before it is measured: {} jobs submitted by {} clients as \
         one account to an API-only replica, so they stay queued; then each hot statement timed {} \
         times through sqlx against that queue (the claim in a transaction rolled back); then a \
         dispatching replica drains the queue (tasks finished ÷ its start to the last finish).\n\n\
         Claim plan with history:\n\n```\n{}\n```",
        num(h, "/fill_seconds").unwrap_or(0.0),
        num(h, "/analyze_seconds").unwrap_or(0.0),
        num(a, "/config/jobs").unwrap_or(0.0),
        num(a, "/config/clients").unwrap_or(0.0),
        h.pointer("/empty/statements/0/samples")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        h.pointer("/claim_plan").and_then(Value::as_str).unwrap_or(""),
    );
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throughput_ratio_is_the_first_row() {
        let a = json!({"completion": {"tasks_per_second": 150.0}, "submit": {"p99_ms": 4.0}});
        let g = json!({"jobs_per_second": 600.0, "add": {"p99_ms": 2.0}});
        let rows = rows(&a, &g);
        let ratio = rows[0].ratio().expect("ratio");
        assert!((ratio - 0.25).abs() < 1e-9);
        let table = table(&rows);
        assert!(table.contains("| 150.0 | 600.0 | 0.25 |"));
        assert!(!table.contains("WatchJob"));
    }

    #[test]
    fn history_rows_compare_with_the_empty_database() {
        let statement =
            |p50: f64| json!([{"name": "claim", "samples": 200, "p50_ms": p50, "p99_ms": 1.0}]);
        let a = json!({
            "config": {"jobs": 1000, "clients": 16},
            "history": {
                "finished_jobs": 1_000_000,
                "fill_seconds": 60.0,
                "analyze_seconds": 2.0,
                "claim_plan": "Limit",
                "empty": {"submit": {"p50_ms": 2.0, "p99_ms": 4.0}, "statements": statement(0.1), "drain_tasks_per_second": 100.0},
                "history": {"submit": {"p50_ms": 2.0, "p99_ms": 4.4}, "statements": statement(0.1), "drain_tasks_per_second": 95.0},
            },
        });
        let section = history_section(&a).expect("section");
        assert!(section.contains("with 1,000,000 finished jobs"));
        assert!(section.contains("| Submit latency p99 (ms) | 4.00 | 4.40 | 1.10 |"));
        assert!(section.contains("| claim: p50 (ms) | 0.100 | 0.100 | 1.00 |"));
        assert!(section.contains("| 100.0 | 95.0 | 0.95 |"));
        assert!(history_section(&json!({"history": null})).is_none());
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
