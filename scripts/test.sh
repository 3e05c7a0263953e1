#!/usr/bin/env bash
# Runs the whole test suite: unit tests, each service's integration tests (real processor, real
# PostgreSQL, real s3s-fs, real HTTP servers on 127.0.0.1). Uses cargo-nextest when it is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="${HOME}/.cargo/bin:${PATH}"

# Every PostgreSQL test creates its own database; drop those of earlier runs.
if command -v psql >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -d postgres -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'atelier_test_%'" 2>/dev/null |
        while read -r db; do psql -h 127.0.0.1 -U postgres -d postgres -qc "DROP DATABASE IF EXISTS \"${db}\"" >/dev/null 2>&1 || true; done
fi
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --locked --workspace --all-features --no-fail-fast --test-threads "${ATELIER_TEST_THREADS:-4}"
    # nextest does not run doctests.
    cargo test --locked --workspace --all-features --doc
else
    cargo test --locked --workspace --all-features --no-fail-fast
fi
bash scripts/schemathesis.sh
