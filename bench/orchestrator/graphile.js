// The reference of `make bench-orchestrator`: the same number of trivial jobs through graphile-worker
// on its own fresh database of the same PostgreSQL. Jobs are added with `addJob` from the worker utils
// by concurrent clients while a worker with comparable concurrency runs them; an empty task function
// is the work. Timing runs from the first add to the last completion. Prints JSON.
//
// node graphile.js --jobs 1000 --clients 16 --concurrency 32 [--postgres postgres://postgres@127.0.0.1:5432]
"use strict";

const path = require("path");
const { performance } = require("perf_hooks");

const nodeModules = path.join(__dirname, "node", "node_modules");
const { run, makeWorkerUtils, Logger } = require(path.join(nodeModules, "graphile-worker"));
const { Client, Pool } = require(path.join(nodeModules, "pg"));
const { version } = require(path.join(nodeModules, "graphile-worker", "package.json"));

function options() {
  const o = {
    jobs: 1000,
    clients: 16,
    concurrency: 32,
    postgres: "postgres://postgres@127.0.0.1:5432",
    timeoutSeconds: 900,
  };
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, "").replace(/-([a-z])/g, (_, c) => c.toUpperCase());
    if (!(name in o) || argv[i + 1] === undefined) {
      throw new Error(`unknown or incomplete option ${argv[i]}`);
    }
    o[name] = typeof o[name] === "number" ? Number(argv[i + 1]) : argv[i + 1];
  }
  return o;
}

function percentile(sorted, q) {
  if (sorted.length === 0) return 0;
  const rank = Math.min(Math.max(Math.ceil(q * sorted.length), 1), sorted.length);
  return sorted[rank - 1];
}

async function admin(server, sql, params) {
  const client = new Client({ connectionString: `${server}/postgres` });
  await client.connect();
  try {
    return await client.query(sql, params);
  } finally {
    await client.end();
  }
}

// Transactions committed and rows written so far in the database (pg_stat_database), and rows
// written in its own tables alone (pg_stat_user_tables: no system catalogs, so no statistics
// that autovacuum's ANALYZE writes).
async function activity(server, name) {
  const r = await admin(
    server,
    "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted AS rows FROM pg_stat_database WHERE datname = $1",
    [name],
  );
  const client = new Client({ connectionString: `${server}/${name}` });
  await client.connect();
  let tableRows = 0;
  try {
    const t = await client.query(
      "SELECT COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0) AS rows FROM pg_stat_user_tables",
    );
    tableRows = Number(t.rows[0].rows);
  } finally {
    await client.end();
  }
  return { commits: Number(r.rows[0].xact_commit), rows: Number(r.rows[0].rows), tableRows };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function main() {
  const o = options();
  const server = o.postgres.replace(/\/$/, "");
  const name = `atelier_bench_graphile_${process.pid}_${Date.now()}`;
  const connectionString = `${server}/${name}`;
  await admin(server, `CREATE DATABASE ${name}`);
  const quiet = new Logger(() => () => {});
  // Pools owned here, so that idle connections closed at the end never surface as unhandled errors.
  const pools = [];
  const pool = (max) => {
    const p = new Pool({ connectionString, max });
    p.on("error", () => {});
    p.on("connect", (client) => client.on("error", () => {}));
    pools.push(p);
    return p;
  };
  let runner;
  let utils;
  try {
    utils = await makeWorkerUtils({ pgPool: pool(o.clients + 2), logger: quiet });
    await utils.migrate();

    const addedAt = new Map();
    const latencies = [];
    let completed = 0;
    let failed = 0;
    let started = 0;
    let lastStart = 0;
    let lastCompletion = 0;
    let done;
    const allDone = new Promise((resolve) => {
      done = resolve;
    });
    runner = await run({
      pgPool: pool(o.concurrency + 2),
      concurrency: o.concurrency,
      noHandleSignals: true,
      logger: quiet,
      taskList: {
        // The trivial task: nothing to do.
        trivial: async () => {},
      },
    });
    runner.events.on("job:start", () => {
      started += 1;
      lastStart = performance.now();
    });
    runner.events.on("job:complete", ({ job, error }) => {
      const now = performance.now();
      if (error) {
        failed += 1;
      } else {
        completed += 1;
        const t = addedAt.get(String(job.id));
        if (t !== undefined) latencies.push(now - t);
      }
      lastCompletion = now;
      if (completed + failed >= o.jobs) done();
    });

    // PostgreSQL 15 publishes an idle connection's counts after up to 10 s: let them settle.
    await sleep(11000);
    const before = await activity(server, name);
    const addLatencies = [];
    let next = 0;
    const t0 = performance.now();
    const client = async () => {
      for (;;) {
        const i = next++;
        if (i >= o.jobs) return;
        const t = performance.now();
        const job = await utils.addJob("trivial", { i });
        const now = performance.now();
        addLatencies.push(now - t);
        addedAt.set(String(job.id), t);
      }
    };
    await Promise.all(Array.from({ length: o.clients }, client));
    const addSeconds = (performance.now() - t0) / 1000;
    const timeout = sleep(o.timeoutSeconds * 1000).then(() => "timeout");
    if ((await Promise.race([allDone, timeout])) === "timeout") {
      throw new Error(`only ${completed + failed} of ${o.jobs} jobs finished in ${o.timeoutSeconds} s`);
    }
    const span = (lastCompletion - t0) / 1000;
    const dispatchSpan = (lastStart - t0) / 1000;
    await sleep(11000); // every connection has published its counts by then
    const after = await activity(server, name);
    await runner.stop();
    runner = undefined;

    // Drain: every job queued first, then a fresh worker runs them all.
    next = 0;
    const drainClient = async () => {
      for (;;) {
        const i = next++;
        if (i >= o.jobs) return;
        await utils.addJob("trivial", { i });
      }
    };
    await Promise.all(Array.from({ length: o.clients }, drainClient));
    let drained = 0;
    let drainLast = 0;
    let drainDone;
    const drainAll = new Promise((resolve) => {
      drainDone = resolve;
    });
    const d0 = performance.now();
    runner = await run({
      pgPool: pool(o.concurrency + 2),
      concurrency: o.concurrency,
      noHandleSignals: true,
      logger: quiet,
      taskList: { trivial: async () => {} },
    });
    runner.events.on("job:complete", () => {
      drained += 1;
      drainLast = performance.now();
      if (drained >= o.jobs) drainDone();
    });
    const drainTimeout = sleep(o.timeoutSeconds * 1000).then(() => "timeout");
    if ((await Promise.race([drainAll, drainTimeout])) === "timeout") {
      throw new Error(`only ${drained} of ${o.jobs} queued jobs drained in ${o.timeoutSeconds} s`);
    }
    const drainSpan = (drainLast - d0) / 1000;
    addLatencies.sort((a, b) => a - b);
    latencies.sort((a, b) => a - b);
    const result = {
      system: "graphile-worker",
      version,
      node: process.version,
      jobs: o.jobs,
      clients: o.clients,
      concurrency: o.concurrency,
      completed,
      failed,
      span_seconds: span,
      jobs_per_second: completed / span,
      started_per_second: started / dispatchSpan,
      latency_p50_ms: percentile(latencies, 0.5),
      latency_p99_ms: percentile(latencies, 0.99),
      db_commits_per_job: (after.commits - before.commits) / o.jobs,
      db_rows_written_per_job: (after.rows - before.rows) / o.jobs,
      db_table_rows_written_per_job: (after.tableRows - before.tableRows) / o.jobs,
      drain: { jobs: drained, span_seconds: drainSpan, jobs_per_second: drained / drainSpan },
      add: {
        wall_seconds: addSeconds,
        per_second: o.jobs / addSeconds,
        mean_ms: addLatencies.reduce((a, b) => a + b, 0) / Math.max(addLatencies.length, 1),
        p50_ms: percentile(addLatencies, 0.5),
        p90_ms: percentile(addLatencies, 0.9),
        p99_ms: percentile(addLatencies, 0.99),
        max_ms: addLatencies.length ? addLatencies[addLatencies.length - 1] : 0,
      },
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    if (runner) await runner.stop().catch(() => {});
    if (utils) await utils.release().catch(() => {});
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
    await admin(server, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => {});
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(`graphile bench failed: ${e && e.stack ? e.stack : e}`);
    process.exit(1);
  },
);
