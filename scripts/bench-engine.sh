#!/usr/bin/env bash
# `make bench-engine`: times Atelier's image engine against libvips (pyvips) and Pillow in one run,
# on the same generated images (SPEC §8, issue 5 item 3).
#
# 1. installs the system libjpeg-turbo (Debian: libturbojpeg0-dev) when missing, then builds
#    bench/engine in release twice: the default, pure-Rust engine, and with `--features turbojpeg`
#    (DCT-scaled JPEG decoding through libjpeg-turbo) — the configuration whose ratio is printed last;
# 2. creates bench/engine/.venv with pinned pyvips[binary] (which ships libvips) and Pillow from PyPI;
# 3. generates the test images into target/bench-engine/images (deterministic; reused when present);
# 4. times each case with Atelier (and cases A and D also with the pure-Rust build), then with the
#    references, on those files, one thread each, then the codec building blocks of A and C alone;
# 5. drives the real processor service over gRPC at full load (one client per core, sources from a
#    local HTTP server and from uploads) against the bare engine at full load (one thread per core),
#    on cases A and C (SPEC §8: the service adds at most 15 %);
# 6. writes bench/results/engine-<date>.md and .json, prints the tables, the line
#    `processor overhead vs bare engine at full load: +X.X % (goal ≤ 15 %)` and, as the very last
#    line, `engine time ratio vs libvips: X.XX` (case A: Atelier's median over libvips's median).
#
# Knobs: BENCH_RUNS (15), BENCH_WARMUP (2), BENCH_BIG_RUNS (5, the 50 MP case), BENCH_BIG_WARMUP (1),
# PYTHON (python3.11, else python3), BENCH_FEATURES (turbojpeg; empty = bench the pure-Rust build only),
# BENCH_SERVICE_CASES (A,C), BENCH_SERVICE_IMAGES (30 images per worker per round),
# BENCH_SERVICE_ROUNDS (3), BENCH_SERVICE_ONLY (1 = build, then only step 5, printing its JSON; no
# results files).
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="${HOME}/.cargo/bin:${PATH}"

PYVIPS_VERSION=3.2.0
PYVIPS_BINARY_VERSION=8.18.7
PILLOW_VERSION=12.1.1

RUNS="${BENCH_RUNS:-15}"
WARMUP="${BENCH_WARMUP:-2}"
BIG_RUNS="${BENCH_BIG_RUNS:-5}"
BIG_WARMUP="${BENCH_BIG_WARMUP:-1}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
WORK="${TARGET_DIR}/bench-engine"
VENV=bench/engine/.venv
BIN="${TARGET_DIR}/release/atelier-bench-engine"

# Atelier's engine runs on one thread, so libvips gets one too.
export VIPS_CONCURRENCY=1

log() { echo "==> $*" >&2; }

FEATURES="${BENCH_FEATURES-turbojpeg}"
PURE_BIN="${WORK}/atelier-bench-engine-pure"

if [[ "${FEATURES}" == *turbojpeg* ]] && ! pkg-config --exists libturbojpeg 2>/dev/null; then
    log "installing libturbojpeg0-dev (system libjpeg-turbo for the turbojpeg feature)"
    SUDO=""
    if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
    ${SUDO} apt-get update -qq >&2 || true
    DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq libturbojpeg0-dev pkg-config >&2
fi

mkdir -p "${WORK}"
log "building atelier-bench-engine, pure Rust (release; the first build takes a few minutes)"
cargo build --release --locked -p atelier-bench-engine >&2
cp "${BIN}" "${PURE_BIN}"
if [[ -n "${FEATURES}" ]]; then
    log "building atelier-bench-engine with --features ${FEATURES}"
    cargo build --release --locked -p atelier-bench-engine --features "${FEATURES}" >&2
fi
decoder="$("${BIN}" decoder)"
log "scaled JPEG decoder of the benchmarked build: ${decoder}"
if [[ "${FEATURES}" == *turbojpeg* && "${decoder}" != "libjpeg-turbo" ]]; then
    echo "bench-engine: built with ${FEATURES} but libjpeg-turbo was not linked (is libturbojpeg0-dev installed?)" >&2
    exit 1
fi

SERVICE_CASES="${BENCH_SERVICE_CASES:-A,C}"
SERVICE_IMAGES="${BENCH_SERVICE_IMAGES:-30}"
SERVICE_ROUNDS="${BENCH_SERVICE_ROUNDS:-3}"
service_run() {
    log "the processor service at full load against the bare engine (cases ${SERVICE_CASES}, ${SERVICE_ROUNDS} rounds of ${SERVICE_IMAGES} images per worker)"
    "${BIN}" service --dir "${WORK}/images" --objects "${WORK}/service-objects" \
        --cases "${SERVICE_CASES}" --images "${SERVICE_IMAGES}" --rounds "${SERVICE_ROUNDS}" \
        --warmup "${WARMUP}" >"${WORK}/service.json"
}
if [[ "${BENCH_SERVICE_ONLY:-}" == 1 ]]; then
    "${BIN}" gen --dir "${WORK}/images" >/dev/null
    service_run
    cat "${WORK}/service.json"
    exit 0
fi

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
want="pyvips ${PYVIPS_VERSION} libvips ${PYVIPS_BINARY_VERSION} Pillow ${PILLOW_VERSION}"
check_venv() {
    "${VENV}/bin/python" - <<'EOF' 2>/dev/null
import PIL, pyvips
print(f"pyvips {pyvips.__version__} libvips {pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)} Pillow {PIL.__version__}")
EOF
}
if [[ ! -x "${VENV}/bin/python" ]] || [[ "$(check_venv || true)" != "${want}" ]]; then
    log "creating ${VENV} (${want})"
    rm -rf "${VENV}"
    "${PYTHON}" -m venv "${VENV}"
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
        "pyvips[binary]==${PYVIPS_VERSION}" "pyvips-binary==${PYVIPS_BINARY_VERSION}" \
        "Pillow==${PILLOW_VERSION}" >&2
fi
got="$(check_venv || true)"
if [[ "${got}" != "${want}" ]]; then
    echo "bench-engine: the reference venv is not usable (import pyvips/PIL gave: '${got}', wanted '${want}')" >&2
    exit 1
fi
log "references: ${got}, VIPS_CONCURRENCY=${VIPS_CONCURRENCY}"

mkdir -p "${WORK}" bench/results
log "generating test images in ${WORK}/images"
"${BIN}" gen --dir "${WORK}/images" >"${WORK}/inputs.json"

# One case at a time, Atelier then the references on the same case, so the numbers compared in a
# row are taken seconds apart, less exposed to load changes from other work on the machine.
ours=() refs=() pure=()
for group in A:A B:B,B_lossless C:C D:D; do
    case_id="${group%%:*}"
    log "case ${case_id}: Atelier, then libvips and Pillow (${WARMUP} warm-ups + ${RUNS} runs; 50 MP: ${BIG_WARMUP} + ${BIG_RUNS})"
    "${BIN}" run --dir "${WORK}/images" --cases "${group#*:}" --runs "${RUNS}" --warmup "${WARMUP}" \
        --big-runs "${BIG_RUNS}" --big-warmup "${BIG_WARMUP}" >"${WORK}/atelier-${case_id}.json"
    if [[ -n "${FEATURES}" && ( "${case_id}" == A || "${case_id}" == D ) ]]; then
        log "case ${case_id}: Atelier's default pure-Rust build"
        "${PURE_BIN}" run --dir "${WORK}/images" --cases "${case_id}" --runs "${RUNS}" --warmup "${WARMUP}" \
            --big-runs "${BIG_RUNS}" --big-warmup "${BIG_WARMUP}" >"${WORK}/atelier-pure-${case_id}.json"
        pure+=(--pure "${WORK}/atelier-pure-${case_id}.json")
    fi
    "${VENV}/bin/python" bench/engine/reference.py run --inputs "${WORK}/inputs.json" \
        --cases "${group#*:}" --runs "${RUNS}" --warmup "${WARMUP}" \
        --big-runs "${BIG_RUNS}" --big-warmup "${BIG_WARMUP}" >"${WORK}/references-${case_id}.json"
    ours+=(--ours "${WORK}/atelier-${case_id}.json")
    refs+=(--refs "${WORK}/references-${case_id}.json")
done
log "codec building blocks"
"${BIN}" micro --dir "${WORK}/images" --runs "${RUNS}" >"${WORK}/micro.json"
service_run

date="$(date -u +%Y-%m-%d)"
commit="$(git describe --always --dirty 2>/dev/null || echo unknown)"
"${BIN}" report "${ours[@]}" "${refs[@]}" "${pure[@]}" --micro "${WORK}/micro.json" --service "${WORK}/service.json" \
    --md "bench/results/engine-${date}.md" --json "bench/results/engine-${date}.json" \
    --meta "date=${date}" --meta "commit=${commit}" --meta "rustc=$(rustc -V | cut -d' ' -f2)" \
    --meta "features=${FEATURES:-none}" --meta "scaled_jpeg_decoder=${decoder}" \
    --meta "libjpeg_turbo=$(pkg-config --modversion libturbojpeg 2>/dev/null || echo none)"
