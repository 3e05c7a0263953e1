#!/usr/bin/env bash
# Property-based API test of the REST gateway: builds and starts a processor, an orchestrator (SQLite in
# a temp folder) and the gateway on 127.0.0.1 (each on a free port it logs), funds an account through
# the admin API, then runs schemathesis (pinned, from PyPI, in var/schemathesis-venv) against the
# gateway's /openapi.json. Fails on any 5xx and on any response that breaks the documented schema.
# Stops the services it started in every case.
#
#   scripts/schemathesis.sh                 install if needed, then test
#   scripts/schemathesis.sh --install-only  install schemathesis only (idempotent)
#
# ATELIER_SCHEMATHESIS_EXAMPLES (default 30) bounds the examples per operation, keeping the run short.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="${HOME}/.cargo/bin:${PATH}"

SCHEMATHESIS_VERSION="4.32.5"
VENV=var/schemathesis-venv
ST="${VENV}/bin/schemathesis"
EXAMPLES="${ATELIER_SCHEMATHESIS_EXAMPLES:-30}"
ACCOUNT=schemathesis
BIN="${CARGO_TARGET_DIR:-target}/debug"

install_schemathesis() {
    if [[ -x "${ST}" ]] && "${ST}" --version 2>/dev/null | grep -q "version ${SCHEMATHESIS_VERSION}\$"; then
        echo "schemathesis ${SCHEMATHESIS_VERSION} already installed in ${VENV}"
        return
    fi
    echo "installing schemathesis ${SCHEMATHESIS_VERSION} into ${VENV}"
    mkdir -p var
    python3 -m venv "${VENV}"
    "${VENV}/bin/pip" install --quiet --disable-pip-version-check "schemathesis==${SCHEMATHESIS_VERSION}"
}

install_schemathesis
if [[ "${1:-}" == "--install-only" ]]; then
    exit 0
fi

echo "==> the orchestrator, the processor, the gateway and the CLI, as the test build made them"
# The same build as `make test`'s (every feature, test profile, dev-dependencies unified), so after
# the test run this compiles nothing: the binaries are the ones the integration tests started.
# shellcheck source=scripts/turbojpeg-mode.sh
source scripts/turbojpeg-mode.sh
cargo test --no-run --locked --workspace --all-features --quiet

WORK="$(mktemp -d)"
PIDS=()
stop_services() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "${pid}" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "${pid}" 2>/dev/null || true; done
    PIDS=()
    rm -rf "${WORK}"
}
trap stop_services EXIT
trap 'exit 130' INT TERM

# Waits for "<name> listening" in a JSON log and prints the address it logged.
address_of() {
    local name=$1 log=$2 pid=$3 addr
    for _ in $(seq 1 600); do
        addr="$(grep "\"${name} listening\"" "${log}" 2>/dev/null | grep -o '"addr":"[^"]*"' | head -n 1 | cut -d'"' -f4 || true)"
        if [[ -n "${addr}" ]]; then
            echo "${addr}"
            return
        fi
        if ! kill -0 "${pid}" 2>/dev/null; then
            echo "the ${name} exited before listening; its log:" >&2
            cat "${log}" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "the ${name} did not log its address within 60 s; its log:" >&2
    cat "${log}" >&2
    return 1
}

random_token() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
ADMIN_TOKEN="$(random_token)"
SERVICE_TOKEN="$(random_token)"
export ATELIER_LOG_FORMAT=json

ATELIER_SERVICE_TOKEN="${SERVICE_TOKEN}" "${BIN}/atelier-processor" \
    --storage "${WORK}/objects" --listen 127.0.0.1:0 >"${WORK}/processor.log" 2>&1 &
PIDS+=($!)
PROCESSOR="http://$(address_of processor "${WORK}/processor.log" "${PIDS[-1]}")"

ATELIER_ADMIN_TOKEN="${ADMIN_TOKEN}" ATELIER_SERVICE_TOKEN="${SERVICE_TOKEN}" "${BIN}/atelier-orchestrator" \
    --database-url "sqlite://${WORK}/atelier.db" --storage "${WORK}/objects" \
    --processor "${PROCESSOR}" --listen 127.0.0.1:0 >"${WORK}/orchestrator.log" 2>&1 &
PIDS+=($!)
ORCHESTRATOR="http://$(address_of orchestrator "${WORK}/orchestrator.log" "${PIDS[-1]}")"

# With a link secret and the storage folder, /v1/files/{token} checks every fuzzed token.
ATELIER_LINK_SECRET="$(random_token)" "${BIN}/atelier-gateway" --orchestrator "${ORCHESTRATOR}" \
    --storage "${WORK}/objects" --listen 127.0.0.1:0 >"${WORK}/gateway.log" 2>&1 &
PIDS+=($!)
GATEWAY="http://$(address_of gateway "${WORK}/gateway.log" "${PIDS[-1]}")"
echo "==> processor ${PROCESSOR}, orchestrator ${ORCHESTRATOR}, gateway ${GATEWAY}"

"${BIN}/atelier" health --endpoint "${ORCHESTRATOR}" --wait 60 >/dev/null

echo "==> a tenant, a key and a funded member account"
export ATELIER_ENDPOINT="${ORCHESTRATOR}" ATELIER_ADMIN_TOKEN="${ADMIN_TOKEN}"
unset ATELIER_JSON
TENANT="$("${BIN}/atelier" admin create-tenant schemathesis)"
KEY="$("${BIN}/atelier" admin create-key "${TENANT}")"
"${BIN}/atelier" admin upsert-account "${TENANT}" "${ACCOUNT}" >/dev/null
"${BIN}/atelier" admin membership "${TENANT}" "${ACCOUNT}" --active true >/dev/null
"${BIN}/atelier" admin grant "${TENANT}" "${ACCOUNT}" 1000000 --reason schemathesis >/dev/null

echo "==> schemathesis ${SCHEMATHESIS_VERSION} against ${GATEWAY}/openapi.json (${EXAMPLES} examples per operation)"
status=0
# Run from the temp folder: schemathesis keeps a cache in its working directory. The service token in
# X-Api-Key lets the internal status route of seed 001 (PUT /api/task/{task_id}/status) past its check.
ROOT="$(pwd)"
(cd "${WORK}" && "${ROOT}/${ST}" run "${GATEWAY}/openapi.json" \
    --checks not_a_server_error,response_schema_conformance \
    --header "Authorization: Bearer ${KEY}" \
    --header "X-Atelier-Account: ${ACCOUNT}" \
    --header "X-Api-Key: ${SERVICE_TOKEN}" \
    --max-examples "${EXAMPLES}" \
    --workers 2 \
    --request-timeout 30 \
    --suppress-health-check all \
    --generation-database "${ROOT}/var/schemathesis-examples" \
    --report junit --report-dir "${ROOT}/var/schemathesis-report") || status=$?
if [[ ${status} -ne 0 ]]; then
    echo "schemathesis found problems (exit ${status}); the gateway's log:" >&2
    tail -n 50 "${WORK}/gateway.log" >&2
    exit "${status}"
fi
echo "schemathesis: no server errors, every response matches the schema"
