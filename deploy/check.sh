#!/usr/bin/env bash
# Offline checks of deploy/ (Kubernetes schemas, compose structure, the Dockerfile's binaries).
#   deploy/check.sh                 install the validator if needed, then check
#   deploy/check.sh --install-only  install kubernetes-validate (pinned, PyPI) into var/deploy-venv
set -euo pipefail
cd "$(dirname "$0")/.."

VALIDATE_VERSION="1.37.0"
VENV=var/deploy-venv

if ! "${VENV}/bin/python" -c "import kubernetes_validate, yaml, sys; sys.exit(kubernetes_validate.__version__ != '${VALIDATE_VERSION}')" 2>/dev/null; then
    echo "installing kubernetes-validate ${VALIDATE_VERSION} into ${VENV}"
    mkdir -p var
    python3 -m venv "${VENV}"
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check \
        "kubernetes-validate==${VALIDATE_VERSION}" pyyaml
fi
if [[ "${1:-}" == "--install-only" ]]; then
    exit 0
fi
exec "${VENV}/bin/python" deploy/check.py
