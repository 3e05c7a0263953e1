#!/usr/bin/env bash
# Installs the external test dependencies of Atelier:
#   - s3s-fs (a real S3-compatible server backed by a folder), used by atelier-storage tests;
#   - a running PostgreSQL on 127.0.0.1:5432;
#   - libjpeg-turbo's development files (Debian libturbojpeg0-dev), so the engine's `turbojpeg`
#     feature is tested linked; scripts/test.sh also tests it with the library hidden;
#   - curl and jq, which the README's own commands use (crates/cli/tests/readme.rs runs them);
#   - ONNX Runtime's shared library and real test photos, both from PyPI wheels;
#   - kubernetes-validate (PyPI), which checks the Kubernetes manifests of deploy/ offline;
#   - Debian's Chromium (/usr/bin/chromium) and playwright-core (npm, pinned by its lock file) for the
#     console's browser test (services/gateway/tests/browser).
# Idempotent: safe to run again.
set -euo pipefail

if pkg-config --exists libturbojpeg 2>/dev/null; then
    echo "libturbojpeg already installed"
else
    echo "installing libturbojpeg0-dev and pkg-config"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    ${SUDO} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq --no-install-recommends \
        libturbojpeg0-dev pkg-config >/dev/null
    pkg-config --exists libturbojpeg
fi

S3S_FS_VERSION="0.14.1"

missing=()
for tool in curl jq; do
    command -v "${tool}" >/dev/null 2>&1 || missing+=("${tool}")
done
if ((${#missing[@]} > 0)); then
    echo "installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}"
fi

if command -v s3s-fs >/dev/null 2>&1 || [ -x "${HOME}/.cargo/bin/s3s-fs" ]; then
    echo "s3s-fs already installed"
else
    echo "installing s3s-fs ${S3S_FS_VERSION}"
    cargo install s3s-fs --version "${S3S_FS_VERSION}" --features binary --locked
fi

if command -v pg_isready >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_isready >/dev/null 2>&1; then
    PG_ISREADY="$(command -v pg_isready || ls /usr/lib/postgresql/*/bin/pg_isready | head -n 1)"
    if "${PG_ISREADY}" -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
        echo "PostgreSQL already running"
    else
        PG_VERSION="$(ls /etc/postgresql | head -n 1)"
        echo "starting PostgreSQL ${PG_VERSION}"
        pg_ctlcluster --skip-systemctl-redirect "${PG_VERSION}" main start
        for _ in $(seq 1 30); do
            if "${PG_ISREADY}" -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
                echo "PostgreSQL ready"
                break
            fi
            sleep 1
        done
        "${PG_ISREADY}" -h 127.0.0.1 -p 5432
    fi
else
    echo "PostgreSQL is not installed (pg_isready not found)" >&2
    exit 1
fi

# The console's browser test: Debian's headless Chromium, driven by playwright-core from npm (which
# downloads no browser of its own).
if [ -x /usr/bin/chromium ]; then
    echo "chromium already installed"
else
    echo "installing chromium (Debian package)"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    ${SUDO} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq --no-install-recommends chromium >/dev/null
    [ -x /usr/bin/chromium ]
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "installing Node.js and npm (Debian packages)"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    ${SUDO} apt-get update -qq
    DEBIAN_FRONTEND=noninteractive ${SUDO} apt-get install -y -qq nodejs npm >/dev/null
fi
BROWSER_TEST="$(cd "$(dirname "$0")/../services/gateway/tests/browser" && pwd)"
# npm writes node_modules/.package-lock.json on every install: older than the lock means stale.
if [ -f "${BROWSER_TEST}/node_modules/.package-lock.json" ] &&
    [ ! "${BROWSER_TEST}/package-lock.json" -nt "${BROWSER_TEST}/node_modules/.package-lock.json" ]; then
    echo "console browser test dependencies already installed"
else
    echo "installing the console browser test's npm packages (npm ci)"
    (cd "${BROWSER_TEST}" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
fi

# ONNX Runtime's shared library (from PyPI's wheel) for the processor's matting models.
bash "$(dirname "$0")/install-onnxruntime.sh"

# Real photos (from scikit-image's wheel) for the matting tests.
bash "$(dirname "$0")/install-test-photos.sh"

# kubernetes-validate (pinned, from PyPI, in var/deploy-venv) for the offline checks of deploy/.
bash "$(dirname "$0")/../deploy/check.sh" --install-only

# schemathesis (pinned, in var/schemathesis-venv) for the REST gateway's API test.
bash "$(dirname "$0")/schemathesis.sh" --install-only
