"""The ``bnnrt`` command: info, predict, eval, bench, convert.

    bnnrt info MODEL
    bnnrt predict MODEL IMAGE... [--top-k K]
    bnnrt eval MODEL --dataset fashion-mnist [--data DIR] [--batch N] [--json]
    bnnrt bench MODEL [--batch N] [--threads N] [--runs N] [--json]
    bnnrt convert MODEL.tflite OUT.bnn [--labels FILE] [--scale S --mean M,.. --std S,..]

MODEL is a .bnn file, an LCE .tflite file (imported on the fly; ``convert``
writes it as .bnn once), or a zoo model (random weights): ``zoo:blendnet20[:width]``
(BlendNet-20, width 1 by default) or ``zoo:resnet20_binary[:width]`` (the
binary ResNet-20 of the benchmarks, width 4 by default).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

from . import __version__, cpu_info
from .errors import BnnrtError
from .model import Model, load


def open_model(spec: str, threads: int | None = None) -> Model:
    if spec.startswith("zoo:"):
        from . import zoo
        parts = spec.split(":")
        makers = {"blendnet20": (zoo.blendnet20, 1), "resnet20_binary": (zoo.resnet20_binary, 4)}
        if parts[1] not in makers or len(parts) > 3:
            raise BnnrtError(f"unknown zoo model {spec!r}; known: zoo:blendnet20[:width], "
                             "zoo:resnet20_binary[:width]")
        make, width = makers[parts[1]]
        if len(parts) == 3:
            if not parts[2].isdigit() or int(parts[2]) < 1:
                raise BnnrtError(f"zoo width must be a positive integer, got {parts[2]!r}")
            width = int(parts[2])
        return make(width=width, threads=threads)
    from .convert import importer_for
    importer = importer_for(spec)
    if importer is not None:           # a .tflite file (any registered suffix) runs, imported on the fly
        return importer(spec, threads=threads)
    return load(spec, threads=threads)


def _untrained(model: Model) -> bool:
    prov = model.metadata.get("provenance", {})
    return isinstance(prov, dict) and prov.get("trained") is False


def cmd_info(args) -> int:
    model = open_model(args.model, args.threads)
    meta = model.metadata
    print(f"bnnrt {__version__}")
    if os.path.isfile(args.model):
        print(f"file: {args.model} ({os.path.getsize(args.model):,} bytes)")
    for key in ("name", "description", "architecture"):
        if key in meta:
            print(f"{key}: {meta[key]}")
    if _untrained(model):
        print("note: this model has random weights (untrained)")
    print(f"labels: {', '.join(model.labels)}")
    info = cpu_info()
    print(f"cpu: {info.get('arch')} features: {', '.join(info.get('features', [])) or 'none'}")
    print(f"kernels: {', '.join(f'{k}={v}' for k, v in model.plan.kernel_variants().items())}")
    print()
    model.summary()
    return 0


def cmd_predict(args) -> int:
    model = open_model(args.model, args.threads)
    if _untrained(model):
        print("note: this model has random weights (untrained): its predictions mean nothing",
              file=sys.stderr)
    results = model.top_k(list(args.images), k=args.top_k)
    for path, top in zip(args.images, results):
        best = top[0]
        print(f"{path}: {best[0]} ({best[1]:.1%})")
        if args.top_k > 1:
            for label, p in top[1:]:
                print(f"    {label} ({p:.1%})")
    return 0


def cmd_eval(args) -> int:
    from . import datasets
    from ._progress import Progress
    model = open_model(args.model, args.threads)
    images, labels = datasets.fashion_mnist("test", args.data)
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    spec = next(iter(model.plan.input_specs.values()))
    if tuple(spec.shape) != images.shape[1:]:
        raise BnnrtError(f"{args.model} takes {'x'.join(map(str, spec.shape))} inputs but "
                         f"{args.dataset} images are {'x'.join(map(str, images.shape[1:]))}")
    if len(model.labels) != 10:
        raise BnnrtError(f"{args.model} has {len(model.labels)} classes; {args.dataset} has 10")
    progress = Progress(len(images), f"eval {args.dataset}", stream=sys.stderr)
    t0 = time.perf_counter()
    correct = 0
    for start in range(0, len(images), args.batch):
        probs = model.predict(images[start:start + args.batch])
        correct += int((probs.argmax(axis=1) == labels[start:start + args.batch]).sum())
        done = min(start + args.batch, len(images))
        progress.update(done, acc=f"{100 * correct / done:.2f}%")
    seconds = time.perf_counter() - t0
    result = {"model": args.model, "dataset": args.dataset, "accuracy": correct / len(images),
              "correct": correct, "images": len(images), "seconds": seconds, "threads": model.threads}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model} on {args.dataset} test: top-1 {100 * result['accuracy']:.2f}% "
              f"({correct}/{len(images)}) in {seconds:.2f} s, {model.threads} thread(s)")
    return 0


def cmd_bench(args) -> int:
    model = open_model(args.model, args.threads)
    spec = next(iter(model.plan.input_specs.values()))
    rng = np.random.default_rng(0)
    batch = rng.standard_normal((args.batch,) + spec.shape).astype(spec.np_dtype)
    for _ in range(args.warmup):
        model.run(batch)
    times = []
    deadline = time.perf_counter() + args.max_seconds
    for _ in range(args.runs):
        t0 = time.perf_counter()
        model.run(batch)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    median = statistics.median(times)
    result = {
        "model": args.model, "median_ms": median * 1e3, "images_per_s": args.batch / median,
        "batch": args.batch, "threads": model.threads, "runs": len(times),
        "min_ms": min(times) * 1e3, "kernel": model.plan.kernel_variants(),
        "binary_macs": sum(r["binary_macs"] for r in model.layers()),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.model}: batch {args.batch}, {model.threads} thread(s), {len(times)} runs")
        print(f"  median {result['median_ms']:.3f} ms  (min {result['min_ms']:.3f} ms)  "
              f"{result['images_per_s']:.1f} images/s")
        gops = result["binary_macs"] * args.batch / median / 1e9
        print(f"  {gops:.1f} G binary MAC/s; kernels: "
              f"{', '.join(f'{k}={v}' for k, v in result['kernel'].items())}")
    return 0


def cmd_convert(args) -> int:
    from .convert import IMPORTERS, importer_for
    from .errors import ModelFormatError
    from .model import save
    importer = importer_for(args.source)
    if importer is None:
        suffix = os.path.splitext(args.source)[1]
        raise ModelFormatError(f"{args.source}: bnnrt imports {', '.join(sorted(IMPORTERS))} files, not "
                               f"{repr(suffix) + ' ones' if suffix else 'files without a suffix'}")
    metadata = {}
    if args.labels:
        with open(args.labels, encoding="utf-8") as fh:
            metadata["labels"] = [line.strip() for line in fh if line.strip()]
    if args.mean or args.std or args.scale is not None:
        # how predict() turns pixels into the model's input: (pixel * scale - mean) / std
        metadata["input"] = {"scale": 1 / 255 if args.scale is None else args.scale,
                             "mean": args.mean, "std": args.std}
    t0 = time.perf_counter()
    model = importer(args.source, metadata=metadata)
    save(model, args.out)
    layers = model.layers()
    binary = sum(r["binary_macs"] for r in layers)
    print(f"{args.source} -> {args.out}: {len(model.graph.nodes)} layers, "
          f"{binary / 1e6:.1f} M binary MACs, {os.path.getsize(args.out):,} bytes "
          f"({time.perf_counter() - t0:.1f} s)")
    return 0


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnnrt", description="Fast CPU inference for binary neural networks.")
    parser.add_argument("--version", action="version", version=f"bnnrt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_cmd(name, help_):
        p = sub.add_parser(name, help=help_)
        p.add_argument("model", help="a .bnn file, an LCE .tflite file, zoo:blendnet20[:width] or "
                       "zoo:resnet20_binary[:width]")
        p.add_argument("--threads", type=_positive, default=None, help="threads (default: all cores)")
        return p

    p = model_cmd("info", "describe a model and the kernels it runs")
    p.set_defaults(func=cmd_info)
    p = model_cmd("predict", "classify images, printing the top-k labels")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--top-k", type=_positive, default=3)
    p.set_defaults(func=cmd_predict)
    p = model_cmd("eval", "top-1 accuracy on a dataset's test split")
    p.add_argument("--dataset", required=True, choices=["fashion-mnist"])
    p.add_argument("--data", default=None, help="folder with the dataset files "
                   "(default: /usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist)")
    p.add_argument("--batch", type=_positive, default=256)
    p.add_argument("--limit", type=_positive, default=None, help="only the first N test images")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)
    p = model_cmd("bench", "measure latency and throughput on random inputs")
    p.add_argument("--batch", type=_positive, default=1)
    p.add_argument("--runs", type=_positive, default=200)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--max-seconds", type=float, default=30.0, help="stop early after this long")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("convert", help="import a Larq Compute Engine .tflite file as a .bnn model")
    p.add_argument("source", help="the .tflite file (needs pip install 'bnnrt[tflite]')")
    p.add_argument("out", help="the .bnn file to write")
    p.add_argument("--labels", default=None, help="a text file with one class label per line")
    p.add_argument("--scale", type=float, default=None, help="pixel scale for predict() (default 1/255)")
    p.add_argument("--mean", type=_floats, default=None, help="per-channel mean after scaling, e.g. "
                   "0.485,0.456,0.406 (Larq zoo's ImageNet models)")
    p.add_argument("--std", type=_floats, default=None, help="per-channel std, e.g. 0.229,0.224,0.225")
    p.set_defaults(func=cmd_convert)
    return parser


def main(argv=None) -> int:
    # a model or file name may hold anything (a lone surrogate from a broken
    # file name, say): printing it must not be what fails
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BnnrtError as e:
        print(f"bnnrt: error: {e}", file=sys.stderr)
        return 2
    except ImportError as e:          # an optional dependency (the flatbuffer reader, torch)
        print(f"bnnrt: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"bnnrt: error: {e}", file=sys.stderr)
        return 2
    except MemoryError:
        print("bnnrt: error: out of memory", file=sys.stderr)
        return 2
