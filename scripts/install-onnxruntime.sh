#!/usr/bin/env bash
# Installs ONNX Runtime's shared library for the processor's in-process matting models:
# var/onnxruntime/libonnxruntime.so, taken from PyPI's `onnxruntime` wheel (the registry ships the
# official build; nothing is compiled). The processor loads it at start (--onnxruntime, default the
# same path); without it the processor runs with no local models and says so.
# Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION="1.31.1"
DEST="var/onnxruntime"
LIB="${DEST}/libonnxruntime.so"

if [ -f "${LIB}" ] && [ "$(cat "${DEST}/VERSION" 2>/dev/null)" = "${ORT_VERSION}" ]; then
    echo "ONNX Runtime ${ORT_VERSION} already installed"
    exit 0
fi
echo "installing ONNX Runtime ${ORT_VERSION} from PyPI into ${DEST}"
rm -rf "${DEST}"
mkdir -p "${DEST}/wheel"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "onnxruntime==${ORT_VERSION}" -d "${DEST}/wheel"
WHEEL="$(ls "${DEST}"/wheel/onnxruntime-*.whl | head -n 1)"
python3 - "${WHEEL}" "${LIB}" <<'PY'
import shutil, sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("onnxruntime/capi/libonnxruntime.so")]
    if not names:
        sys.exit(f"{wheel} carries no libonnxruntime.so")
    with z.open(sorted(names, key=len)[-1]) as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
PY
rm -rf "${DEST}/wheel"
echo "${ORT_VERSION}" > "${DEST}/VERSION"
echo "ONNX Runtime ready: ${LIB}"
