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
# No crate's modules depend on each other in a circle (layers stay layers).
python3 scripts/module-cycles.py

# shellcheck source=scripts/turbojpeg-mode.sh
source scripts/turbojpeg-mode.sh
echo "libjpeg-turbo: ATELIER_TURBOJPEG=${ATELIER_TURBOJPEG}"

if cargo nextest --version >/dev/null 2>&1; then
    run_tests() { cargo nextest run --locked --no-fail-fast --test-threads "${ATELIER_TEST_THREADS:-4}" "$@"; }
else
    run_tests() { cargo test --locked --no-fail-fast "$@"; }
fi

# 1. Everything, with every feature (libjpeg-turbo linked where it is installed).
run_tests --workspace --all-features
# nextest does not run doctests.
cargo test --locked --workspace --all-features --doc

# 2. The engine as the default binaries ship it: pure Rust, no optional system library.
run_tests -p atelier-engine

# 3. The `turbojpeg` feature where libjpeg-turbo is missing: the fallback is compiled, linted and
#    tested on every machine. Its own target folder keeps the main build's artifacts valid.
(
    export ATELIER_TURBOJPEG=off CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}/turbojpeg-off"
    cargo clippy --locked -p atelier-turbojpeg -p atelier-engine --all-targets --all-features -- -D warnings
    run_tests -p atelier-turbojpeg -p atelier-engine --all-features
)

# 4. The deployment files, offline: Kubernetes schemas, the compose file, the image's binaries.
bash deploy/check.sh

bash scripts/schemathesis.sh
