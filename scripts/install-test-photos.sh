#!/usr/bin/env bash
# Real photos the project did not make, for the matting tests: the sample images scikit-image
# ships inside its wheel on PyPI (public-domain or CC0 photos, listed in its data/README), copied
# to var/photos/. Nothing is committed; the wheel is downloaded once.
# Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SKIMAGE_VERSION="0.25.2"
DEST="var/photos"
PHOTOS="coffee.png chelsea.png astronaut.png rocket.jpg"

if [ "$(cat "${DEST}/VERSION" 2>/dev/null)" = "${SKIMAGE_VERSION}" ]; then
    echo "test photos already installed"
    exit 0
fi
echo "installing test photos from scikit-image ${SKIMAGE_VERSION} (PyPI) into ${DEST}"
rm -rf "${DEST}"
mkdir -p "${DEST}/wheel"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    "scikit-image==${SKIMAGE_VERSION}" -d "${DEST}/wheel"
WHEEL="$(ls "${DEST}"/wheel/scikit_image-*.whl | head -n 1)"
python3 - "${WHEEL}" "${DEST}" ${PHOTOS} <<'PY'
import sys, zipfile
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        with z.open(f"skimage/data/{name}") as src, open(f"{dest}/{name}", "wb") as out:
            out.write(src.read())
PY
rm -rf "${DEST}/wheel"
echo "${SKIMAGE_VERSION}" > "${DEST}/VERSION"
ls "${DEST}"
