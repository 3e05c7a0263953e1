#!/usr/bin/env bash
# make bench-orchestrator: Atelier's job-orchestrator on PostgreSQL, against graphile-worker on the same
# PostgreSQL in the same run (SPEC §8, issue 4 item 10).
#
#   1. ensures PostgreSQL runs on 127.0.0.1:5432 and installs graphile-worker from npm;
#   2. builds the bench in release and runs it: a real processor and orchestrator in-process, N trivial
#      jobs from C concurrent clients (submit latency, end-to-end throughput), then W WatchJob streams on
#      an API-only replica process (its memory), then submit latency, the hot statements and the drain
#      rate on an empty database and on one with a million finished jobs;
#   3. runs the same N jobs through graphile-worker (bench/orchestrator/graphile.js);
#   4. writes bench/results/orchestrator-<date>.md and .json, prints the table, and prints as the last
#      line `orchestrator throughput ratio vs graphile-worker: X.XX`.
#
# Everything runs on 127.0.0.1 and is bounded in count and time. Knobs (environment):
#   BENCH_JOBS (1000), BENCH_CLIENTS (16), BENCH_WATCHERS (10000), BENCH_DISPATCH_CONCURRENCY (32),
#   BENCH_PROCESSOR_CONCURRENCY (16), BENCH_GRAPHILE_CONCURRENCY (= dispatch concurrency),
#   BENCH_TIMEOUT_SECONDS (900), BENCH_POSTGRES (postgres://postgres@127.0.0.1:5432),
#   BENCH_HISTORY_JOBS (1000000: finished jobs of the history measurement, 0 skips it).
set -euo pipefail

cd "$(dirname "$0")/.."

JOBS="${BENCH_JOBS:-1000}"
CLIENTS="${BENCH_CLIENTS:-16}"
WATCHERS="${BENCH_WATCHERS:-10000}"
DISPATCH="${BENCH_DISPATCH_CONCURRENCY:-32}"
PROCESSOR="${BENCH_PROCESSOR_CONCURRENCY:-16}"
GRAPHILE_CONCURRENCY="${BENCH_GRAPHILE_CONCURRENCY:-${DISPATCH}}"
TIMEOUT="${BENCH_TIMEOUT_SECONDS:-900}"
HISTORY="${BENCH_HISTORY_JOBS:-1000000}"
POSTGRES="${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432}"
# 0.18 needs Node 22.18 or later; 0.17.3 runs on the Node that Debian ships.
GRAPHILE_VERSION="0.17.3"
CARGO="${CARGO:-cargo}"

# Each WatchJob connection is a socket on both sides; keep well clear of the default limit.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

echo "== PostgreSQL"
PG_ISREADY="$(command -v pg_isready || ls /usr/lib/postgresql/*/bin/pg_isready 2>/dev/null | head -n 1 || true)"
if [ -n "${PG_ISREADY}" ] && "${PG_ISREADY}" -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
    echo "PostgreSQL already running"
else
    bash scripts/install-test-deps.sh
fi

echo "== graphile-worker ${GRAPHILE_VERSION}"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "installing Node.js and npm from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
(
    cd bench/orchestrator/node
    npm install --no-audit --no-fund --save-exact "graphile-worker@${GRAPHILE_VERSION}" --loglevel=error
)

echo "== build (release)"
"${CARGO}" build --release --locked -p atelier-bench-orchestrator
BIN="$("${CARGO}" metadata --format-version 1 --no-deps 2>/dev/null |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
BIN="${BIN:-target}/release/atelier-bench-orchestrator"

WORK="$(mktemp -d)"
trap 'rm -rf "${WORK}"' EXIT

echo "== Atelier: ${JOBS} jobs from ${CLIENTS} clients, ${WATCHERS} WatchJob streams"
"${BIN}" run --jobs "${JOBS}" --clients "${CLIENTS}" --watchers "${WATCHERS}" \
    --dispatch-concurrency "${DISPATCH}" --processor-concurrency "${PROCESSOR}" \
    --history-jobs "${HISTORY}" \
    --timeout-seconds "${TIMEOUT}" --postgres "${POSTGRES}" --out "${WORK}/atelier.json" >/dev/null

echo "== graphile-worker: ${JOBS} jobs from ${CLIENTS} clients, concurrency ${GRAPHILE_CONCURRENCY}"
node bench/orchestrator/graphile.js --jobs "${JOBS}" --clients "${CLIENTS}" \
    --concurrency "${GRAPHILE_CONCURRENCY}" --postgres "${POSTGRES}" \
    --timeout-seconds "${TIMEOUT}" >"${WORK}/graphile.json"

DATE="$(date -u +%Y-%m-%d)"
mkdir -p bench/results
PG_VERSION="$(psql "${POSTGRES}/postgres" -tAc 'SHOW server_version' 2>/dev/null | awk '{print $1}' || true)"
CPU="$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)"
MACHINE="$(nproc) cores (${CPU:-unknown CPU}), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), PostgreSQL ${PG_VERSION:-?}, Node $(node --version)"
COMMIT="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain 2>/dev/null | head -n 1)" ]; then
    COMMIT="${COMMIT} (with uncommitted changes)"
fi

"${BIN}" report --atelier "${WORK}/atelier.json" --graphile "${WORK}/graphile.json" \
    --markdown "bench/results/orchestrator-${DATE}.md" --json "bench/results/orchestrator-${DATE}.json" \
    --date "${DATE}" --commit "${COMMIT}" --machine "${MACHINE}"
