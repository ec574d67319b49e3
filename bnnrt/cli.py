"""The ``bnnrt`` command: info, predict, eval, bench, convert.

    bnnrt info MODEL
    bnnrt predict MODEL PATH... [--batch N] [--top-k K] [--out FILE.csv|FILE.jsonl]
    bnnrt eval MODEL --dataset fashion-mnist [--data DIR] [--batch N] [--json]
    bnnrt bench MODEL [--batch N] [--threads N] [--runs N] [--profile] [--json]
    bnnrt convert MODEL.tflite|MODEL.onnx OUT.bnn [--labels FILE] [--scale S --mean M,.. --std S,..]

MODEL is a .bnn file, an LCE .tflite or a PyTorch-exported .onnx file (imported
on the fly; ``convert`` writes it as .bnn once), or a zoo model (random weights):
``zoo:blendnet20[:width]``
(BlendNet-20, width 1 by default), ``zoo:resnet20_binary[:width]`` (the
binary ResNet-20 of the benchmarks, width 4 by default), ``zoo:blendmixer`` or
``zoo:mixer-binary`` (the shipped Mixers' shapes).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import statistics
import sys
import time

import numpy as np

from . import __version__, cpu_info
from .errors import BnnrtError
from .model import Model, load


#: The zoo models (random weights) a MODEL argument may name.
ZOO_NAMES = "zoo:blendnet20[:width], zoo:resnet20_binary[:width], zoo:blendmixer, zoo:mixer-binary"


def open_model(spec: str, threads: int | None = None) -> Model:
    if spec.startswith("zoo:"):
        from . import zoo
        parts = spec.split(":")
        makers = {"blendnet20": (zoo.blendnet20, 1), "resnet20_binary": (zoo.resnet20_binary, 4),
                  "blendmixer": (lambda threads: zoo.mixer("blend", threads=threads), None),
                  "mixer-binary": (lambda threads: zoo.mixer("binary", threads=threads), None)}
        if len(parts) < 2 or parts[1] not in makers or len(parts) > 3:
            raise BnnrtError(f"unknown zoo model {spec!r}; known: {ZOO_NAMES}")
        make, width = makers[parts[1]]
        if len(parts) == 3:
            if width is None:
                raise BnnrtError(f"zoo:{parts[1]} has no width (the shipped Mixers' shapes)")
            if not parts[2].isdigit() or int(parts[2]) < 1:
                raise BnnrtError(f"zoo width must be a positive integer, got {parts[2]!r}")
            width = int(parts[2])
        return make(threads=threads) if width is None else make(width=width, threads=threads)
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
    """Exit status: 0 when every image was predicted, 1 when some files were
    skipped (each reported on stderr with its reason), 2 on an error (bad
    model, bad arguments, an --out file that cannot be written)."""
    from . import stream
    from ._progress import Progress
    out = _ResultWriter(args.out, args.top_k)
    model = open_model(args.model, args.threads)
    if _untrained(model):
        print("note: this model has random weights (untrained): its predictions mean nothing",
              file=sys.stderr)
    inputs = stream.Inputs(args.images)
    tty = sys.stderr.isatty()
    progress = Progress(sum(1 for _ in inputs), "predict", stream=sys.stderr) if tty else None
    done = failed = 0
    t0 = time.perf_counter()
    with out.open(model.labels):
        for result in stream.predict_files(model, inputs, batch=args.batch):
            done += 1
            if result.error is not None:
                failed += 1
                erase = "\r\x1b[K" if tty else ""      # the progress line, redrawn next update
                print(f"{erase}bnnrt: skipped {result.path}: {result.error}", file=sys.stderr)
            else:
                out.write(result)
            if progress is not None:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                progress.update(done, speed=f"{rate:.0f} images/s")
    seconds = time.perf_counter() - t0
    if args.out or failed or inputs.ignored:
        ignored = f"; {inputs.ignored} other files ignored (not image names)" if inputs.ignored else ""
        print(f"bnnrt: {done - failed} images predicted, {failed} skipped in {seconds:.1f} s "
              f"({(done - failed) / max(seconds, 1e-9):.0f} images/s){ignored}", file=sys.stderr)
    return 1 if failed else 0


class _ResultWriter:
    """``bnnrt predict``'s output: the plain lines on stdout, or a .csv or
    .jsonl file with the columns of :func:`bnnrt.stream.top_k_columns`
    (worked out for 64 results at a time: one numpy call, not one per row)."""

    def __init__(self, path: str | None, k: int):
        self.path, self.k = path, k
        self.kind = "text" if path is None else os.path.splitext(path)[1].lower()
        if self.kind not in ("text", ".csv", ".jsonl"):
            raise BnnrtError(f"--out {path!r}: the file name must end in .csv or .jsonl")
        self.pending: list = []

    @contextlib.contextmanager
    def open(self, labels: list[str]):
        self.labels = labels
        if self.kind == "text":
            self.file = sys.stdout
            yield self
            self.flush()
            return
        with open(self.path, "w", newline="", encoding="utf-8") as self.file:
            if self.kind == ".csv":
                self.csv = csv.writer(self.file)
                self.csv.writerow(["path"] + list(self._columns(np.zeros((1, len(labels))))))
            yield self
            self.flush()

    def _columns(self, probs):
        from .stream import top_k_columns
        return top_k_columns(probs, self.labels, self.k)

    def write(self, result) -> None:
        self.pending.append(result)
        if len(self.pending) >= 64:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        columns = self._columns(np.stack([r.probs for r in self.pending]))
        names = list(columns)
        for result, values in zip(self.pending, zip(*columns.values())):
            row = dict(zip(names, values))
            if self.kind == "text":
                print(f"{result.path}: {row['label']} ({row['probability']:.1%})", file=self.file)
                for j in range(2, self.k + 1):
                    if f"label_{j}" in row:
                        print(f"    {row[f'label_{j}']} ({row[f'probability_{j}']:.1%})", file=self.file)
            elif self.kind == ".csv":
                self.csv.writerow([result.path, *values])
            else:
                self.file.write(json.dumps({"path": result.path, **row}) + "\n")
        self.file.flush()
        self.pending.clear()


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
    times, layers = model.benchmark(args.batch, args.runs, args.warmup, args.max_seconds,
                                    profile=args.profile)
    median = statistics.median(times)
    result = {
        "model": args.model, "median_ms": median * 1e3, "images_per_s": args.batch / median,
        "batch": args.batch, "threads": model.threads, "runs": len(times),
        "min_ms": min(times) * 1e3, "kernel": model.plan.kernel_variants(),
        "binary_macs": sum(r["binary_macs"] for r in model.layers()),
    }
    if layers is not None:
        result["layers"] = layers
        result["layers_ms"] = sum(r["median_ms"] for r in layers)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.model}: batch {args.batch}, {model.threads} thread(s), {len(times)} runs")
    print(f"  median {result['median_ms']:.3f} ms  (min {result['min_ms']:.3f} ms)  "
          f"{result['images_per_s']:.1f} images/s")
    gops = result["binary_macs"] * args.batch / median / 1e9
    print(f"  {gops:.1f} G binary MAC/s; kernels: "
          f"{', '.join(f'{k}={v}' for k, v in result['kernel'].items())}")
    if layers is not None:
        print()
        print_profile(layers, result["median_ms"])
    return 0


def print_profile(layers: list[dict], run_ms: float, file=None) -> None:
    """The op profile the way TFLite's benchmark tool prints it: the layers in
    run order, then totals by op and by precision."""
    file = file or sys.stdout
    total = sum(r["median_ms"] for r in layers)

    def table(title, head, rows):
        print(f"{'=' * 30} {title} {'=' * 30}", file=file)
        print("".join(f"{h:>{w}}" if w > 0 else f"  {h:<{-w}}" for h, w in head), file=file)
        for row in rows:
            print("".join(f"{v:>{w}}" if w > 0 else f"  {v:<{-w}}" for v, (_, w) in zip(row, head)),
                  file=file)
        print(file=file)

    def rate(macs, ms):
        return f"{macs / ms / 1e6:.2f}" if macs and ms > 0 else "-"

    cdf, order = 0.0, []
    for r in layers:
        cdf += r["median_ms"]
        order.append((f"[{r['op']}]", r["kernel"], r["precision"], f"{r['median_ms']:.4f}",
                      f"{100 * r['share']:.2f}%", f"{100 * cdf / total:.2f}%",
                      "-" if r["gmac_s"] is None else f"{r['gmac_s']:.2f}", r["name"]))
    table("Run Order", [("[node type]", -17), ("[kernel]", -12), ("[precision]", -11),
                        ("[median ms]", 12), ("[%]", 9), ("[cdf%]", 9), ("[G MAC/s]", 11),
                        ("[name]", -1)], order)
    for key, title in (("op", "Summary by node type"), ("precision", "Summary by precision")):
        groups: dict[str, list[dict]] = {}
        for r in layers:
            groups.setdefault(r[key], []).append(r)
        rows, cdf = [], 0.0
        for name, members in sorted(groups.items(), key=lambda kv: -sum(r["median_ms"] for r in kv[1])):
            ms = sum(r["median_ms"] for r in members)
            macs = sum(r["binary_macs"] + r["int8_macs"] + r["float_macs"] for r in members)
            batch_macs = sum(r["gmac_s"] * r["median_ms"] * 1e6 for r in members if r["gmac_s"])
            cdf += ms
            rows.append((f"[{name}]", str(len(members)), f"{ms:.4f}", f"{100 * ms / total:.2f}%",
                         f"{100 * cdf / total:.2f}%", f"{macs:,}", rate(batch_macs, ms)))
        table(title, [(f"[{key}]", -17), ("[count]", 8), ("[median ms]", 12), ("[%]", 9),
                      ("[cdf%]", 9), ("[MACs/image]", 14), ("[G MAC/s]", 11)], rows)
    print(f"layers: {total:.3f} ms of the {run_ms:.3f} ms end-to-end median ({100 * total / run_ms:.1f}%); "
          "the rest is the executor (input and output copies, dispatch, threads waiting for "
          "each other)", file=file)


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
        p.add_argument("model", help=f"a .bnn file, an LCE .tflite or an .onnx file, or {ZOO_NAMES}")
        p.add_argument("--threads", type=_positive, default=None, help="threads (default: all cores)")
        return p

    p = model_cmd("info", "describe a model and the kernels it runs")
    p.set_defaults(func=cmd_info)
    p = model_cmd("predict", "classify images (files, directories, globs), printing or writing "
                  "the top-k labels; exit status 1 when some files were skipped")
    p.add_argument("images", nargs="+", metavar="PATH",
                   help="an image file, a directory (its image files, recursively) or a glob")
    p.add_argument("--top-k", type=_positive, default=3)
    p.add_argument("--batch", type=_positive, default=64, help="images per inference (default 64)")
    p.add_argument("--out", default=None, metavar="FILE", help="write FILE.csv or FILE.jsonl "
                   "(path, label, probability, label_2, probability_2, ...) instead of printing")
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
    p.add_argument("--profile", action="store_true", help="also time each layer (TFLite-style op "
                   "profile; with --json, a \"layers\" list)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_bench)
    p = sub.add_parser("convert", help="import an LCE .tflite or an .onnx file as a .bnn model")
    p.add_argument("source", help="the .tflite or .onnx file (needs pip install 'bnnrt[tflite]' or "
                   "'bnnrt[onnx]')")
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
