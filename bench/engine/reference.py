#!/usr/bin/env python3
"""Reference timings for `make bench-engine`: libvips (pyvips) and Pillow on the same files as
atelier-bench-engine, timed the same way (warm-ups, then timed runs that each open the file and end
with the encoded bytes in memory; median and nearest-rank p90; peak RSS of a separate child process
per case).

    reference.py run --inputs inputs.json [--cases A,B,B_lossless,C,D] [--runs 15] [--warmup 2]
                     [--big-runs 5] [--big-warmup 1]
    reference.py child --inputs inputs.json --lib libvips|pillow --case A|B|B_lossless|C|D|none

Prints JSON on stdout. libvips is limited to one thread (VIPS_CONCURRENCY, default 1 here) because
Atelier's engine is single-threaded.
"""

import argparse
import io
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

os.environ.setdefault("VIPS_CONCURRENCY", "1")

# case id -> (input key, output width or None, output format, lossless, big)
CASES = {
    "A": ("photo12", 512, "jpeg", False, False),
    "B": ("photo12", 2048, "webp", False, False),
    "B_lossless": ("photo12", 2048, "webp", True, False),
    "C": ("rgba", None, "jpeg", False, False),
    "D": ("photo50", 512, "jpeg", False, True),
}

# The settings Atelier's engine uses (bench/engine/src/main.rs, crates/engine/src/webp.rs), given
# explicitly to both references so no row depends on a library's own default (Pillow's WebP
# quality defaults to 80, libvips's to 75).
JPEG_QUALITY = 85
# Lossy WebP quality; for lossless WebP libwebp reads quality as compression effort, and 75 is
# what the engine passes there too.
WEBP_QUALITY = 75
# libwebp's `method` (libvips calls it effort): 4 is libwebp's, libvips's and Pillow's default.
WEBP_METHOD = 4


def vips_case(pyvips, path, width, fmt, lossless):
    """One run with libvips; returns (width, height, encoded bytes)."""
    if width is not None:
        # Shrink-on-load: libvips's fastest path for a smaller JPEG output. The box is
        # width x width; the inputs are landscape, so the width decides, as in Atelier's recipe.
        image = pyvips.Image.thumbnail(path, width)
    else:
        image = pyvips.Image.new_from_file(path, access="sequential")
        if image.hasalpha():
            image = image.flatten(background=255)
    if fmt == "jpeg":
        data = image.write_to_buffer(".jpg", Q=JPEG_QUALITY)
    else:
        data = image.write_to_buffer(
            ".webp", Q=WEBP_QUALITY, lossless=lossless, effort=WEBP_METHOD
        )
    return image.width, image.height, data


def pillow_case(Image, path, width, fmt, lossless):
    """One run with Pillow; returns (width, height, encoded bytes)."""
    with Image.open(path) as im:
        if width is not None:
            height = max(1, round(im.height * width / im.width))
            # JPEG DCT scaling to the smallest size that is still at least the target.
            im.draft("RGB", (width, height))
            im.thumbnail((width, 10_000_000), Image.Resampling.LANCZOS)
            out = im
        else:
            im.load()
            out = im
        if out.mode in ("RGBA", "LA", "P") and fmt == "jpeg":
            rgba = out.convert("RGBA")
            white = Image.new("RGB", rgba.size, (255, 255, 255))
            white.paste(rgba, mask=rgba.getchannel("A"))
            out = white
        buf = io.BytesIO()
        if fmt == "jpeg":
            out.convert("RGB").save(buf, "JPEG", quality=JPEG_QUALITY)
        else:
            out.save(
                buf, "WEBP", quality=WEBP_QUALITY, lossless=lossless, method=WEBP_METHOD
            )
        return out.width, out.height, buf.getvalue()


def runner(lib):
    if lib == "libvips":
        import pyvips

        # The operation cache would let repeated runs reuse earlier work.
        pyvips.cache_set_max(0)
        return lambda path, w, f, l: vips_case(pyvips, path, w, f, l)
    from PIL import Image

    return lambda path, w, f, l: pillow_case(Image, path, w, f, l)


def vm_hwm_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def percentile(sorted_values, p):
    rank = math.ceil(p / 100 * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def child_peak_mib(args, lib, case):
    out = subprocess.run(
        [sys.executable, __file__, "child", "--inputs", args.inputs, "--lib", lib, "--case", case],
        check=True,
        capture_output=True,
        text=True,
    )
    return round(json.loads(out.stdout)["vm_hwm_kib"] / 1024, 3)


def cmd_run(args):
    with open(args.inputs) as f:
        inputs = json.load(f)
    result = {
        "vips_concurrency_env": os.environ["VIPS_CONCURRENCY"],
    }
    for lib in ("libvips", "pillow"):
        run = runner(lib)
        cases = {}
        for cid in args.cases.split(","):
            key, width, fmt, lossless, big = CASES[cid]
            path = inputs[key]["path"]
            runs, warmup = (args.big_runs, args.big_warmup) if big else (args.runs, args.warmup)
            print(f"{lib}: case {cid}, {warmup} warm-up + {runs} runs", file=sys.stderr)
            for _ in range(warmup):
                run(path, width, fmt, lossless)
            times = []
            cpu_start = time.process_time()
            for _ in range(runs):
                start = time.perf_counter()
                out = run(path, width, fmt, lossless)
                times.append((time.perf_counter() - start) * 1000)
            cpu_per_run = (time.process_time() - cpu_start) * 1000 / max(runs, 1)
            ordered = sorted(times)
            cases[cid] = {
                "runs": runs,
                "warmup": warmup,
                "median_ms": round(statistics.median(ordered), 3),
                "p90_ms": round(percentile(ordered, 90), 3),
                "min_ms": round(ordered[0], 3),
                "cpu_ms_per_run": round(cpu_per_run, 3),
                "times_ms": [round(t, 3) for t in times],
                "peak_mib": child_peak_mib(args, lib, cid),
                "out_width": out[0],
                "out_height": out[1],
                "out_bytes": len(out[2]),
            }
        result[lib] = {"cases": cases, "baseline_peak_mib": child_peak_mib(args, lib, "none")}
    import PIL
    import pyvips

    get = getattr(pyvips, "concurrency_get", None) or pyvips.vips_lib.vips_concurrency_get
    result["vips_concurrency"] = get()
    result["versions"] = {
        "libvips": f"{pyvips.version(0)}.{pyvips.version(1)}.{pyvips.version(2)}",
        "pyvips": pyvips.__version__,
        "pillow": PIL.__version__,
        "python": platform.python_version(),
    }
    json.dump(result, sys.stdout, indent=2)
    print()


def cmd_child(args):
    with open(args.inputs) as f:
        inputs = json.load(f)
    run = runner(args.lib)
    if args.case != "none":
        key, width, fmt, lossless, _ = CASES[args.case]
        run(inputs[key]["path"], width, fmt, lossless)
    json.dump({"lib": args.lib, "case": args.case, "vm_hwm_kib": vm_hwm_kib()}, sys.stdout)
    print()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--inputs", required=True)
    run.add_argument("--cases", default=",".join(CASES))
    run.add_argument("--runs", type=int, default=15)
    run.add_argument("--warmup", type=int, default=2)
    run.add_argument("--big-runs", type=int, default=5)
    run.add_argument("--big-warmup", type=int, default=1)
    child = sub.add_parser("child")
    child.add_argument("--inputs", required=True)
    child.add_argument("--lib", choices=["libvips", "pillow"], required=True)
    child.add_argument("--case", choices=[*CASES, "none"], required=True)
    args = parser.parse_args()
    if args.command == "run":
        cmd_run(args)
    else:
        cmd_child(args)


if __name__ == "__main__":
    main()
