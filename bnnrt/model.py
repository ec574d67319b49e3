"""The user-facing Model: load, save, predict, run, summary."""

from __future__ import annotations

import sys
import time

import numpy as np

from . import format as _format
from .errors import GraphError, InputError, ModelFormatError
from .graph import Graph
from .images import Preprocessor, check_numeric
from .plan import Plan

#: Batches larger than this run in chunks, so memory stays bounded.
MAX_CHUNK = 256
#: ... and a chunk's memory (arena, scratch) stays below this.
CHUNK_BYTES = 256 << 20


class Model:
    """A planned, ready-to-run model. Safe to use from several threads at once."""

    def __init__(self, graph: Graph, threads: int | None = None, name: str = "<graph>",
                 resolver: str = "kernels"):
        self.graph = graph
        self.name = name
        try:
            self.plan = Plan(graph, threads=threads, resolver=resolver)
        except GraphError as e:
            raise type(e)(f"{name}: {e}") from None
        self._pre = None
        if self._takes_images():      # the metadata's preprocessing is checked at load, not at predict
            try:
                self._pre = Preprocessor(self.metadata.get("input"), self.input_shape)
            except ModelFormatError as e:
                raise ModelFormatError(f"{name}: {e}") from None

    # -- properties
    @property
    def metadata(self) -> dict:
        return self.graph.metadata

    @property
    def threads(self) -> int:
        return self.plan.threads

    @property
    def input_shape(self) -> tuple[int, ...]:
        return next(iter(self.plan.input_specs.values())).shape

    @property
    def labels(self) -> list[str]:
        labels = self.metadata.get("labels")
        n = self.plan.output_specs[0].shape[-1]
        if isinstance(labels, list) and len(labels) == n:
            return [str(v) for v in labels]
        return [str(i) for i in range(n)]

    # -- running
    def run(self, batch):
        """Raw graph outputs for an already preprocessed NHWC batch (no softmax).

        ``batch``: one array (N, H, W, C), or a list of them for multi-input
        graphs. Returns one array, or a list for multi-output graphs."""
        arrays = list(batch) if isinstance(batch, (list, tuple)) else [batch]
        specs = list(self.plan.input_specs.items())
        if len(arrays) != len(specs):
            raise InputError(f"{self.name} takes {len(specs)} input(s), got {len(arrays)}")
        checked = []
        for x, (name, spec) in zip(arrays, specs):
            if not isinstance(x, np.ndarray):
                raise InputError(f"input {name!r}: expected a numpy array, got {type(x).__name__}")
            if x.dtype.kind not in "buif":
                check_numeric(x, f"input {name!r}")      # raises
            if x.shape[1:] != spec.storage_shape or x.ndim != len(spec.shape) + 1:
                raise InputError(f"input {name!r} has shape {x.shape}; expected "
                                 f"(N, {', '.join(map(str, spec.storage_shape))}) {spec.dtype}")
            if not np.can_cast(x.dtype, spec.np_dtype, "same_kind"):
                raise InputError(f"input {name!r} has dtype {x.dtype}; expected {spec.np_dtype}")
            checked.append(x)
        n = checked[0].shape[0]
        if any(x.shape[0] != n for x in checked):
            raise InputError(f"inputs have different batch sizes {[x.shape[0] for x in checked]}")
        outs = self._run_checked(checked, specs)
        return outs[0] if len(outs) == 1 else outs

    def _run_checked(self, checked: list[np.ndarray], specs, timings=None) -> list[np.ndarray]:
        """Run inputs whose shapes and dtypes are checked, a chunk at a time;
        with ``timings``, each step's seconds are added to its slot."""
        n = checked[0].shape[0]
        outs = [np.empty((n,) + s.storage_shape, s.np_dtype) for s in self.plan.output_specs]
        step = self.chunk_size
        for start in range(0, n, step):
            # values checked and run one chunk at a time: the checks' temporaries stay
            # chunk-sized too (a broadcast view of a huge batch costs nothing until then)
            part = [x[start:start + step] for x in checked]
            for x, (name, spec) in zip(part, specs):
                self._check_values(x, name, spec)
            for out, res in zip(outs, self.plan.run(part, timings)):
                out[start:start + step] = res
        return outs

    @property
    def chunk_size(self) -> int:
        """Images per chunk of a large batch: at most MAX_CHUNK, and within CHUNK_BYTES."""
        return max(1, min(MAX_CHUNK, CHUNK_BYTES // max(1, self.plan.bytes_per_sample)))

    @staticmethod
    def _check_values(x, name, spec):
        if spec.dtype == "bits" and spec.channels % 8 and np.any(x[..., -1] >> (spec.channels % 8)):
            raise InputError(f"input {name!r} is a bit tensor of {spec.channels} channels with bits set "
                             f"beyond channel {spec.channels} (they must be 0)")
        if x.dtype.kind == "f" and not np.isfinite(x).all():
            raise InputError(f"input {name!r} contains NaN or infinite values")

    def _takes_images(self) -> bool:
        """One (H, W, C) float input and class scores out: what predict() serves."""
        spec = next(iter(self.plan.input_specs.values()))
        return (len(self.plan.input_specs) == 1 and len(spec.shape) == 3 and spec.dtype == "float32"
                and self.plan.output_specs[0].dtype in ("float32", "int32", "int8"))

    def _preprocessor(self) -> Preprocessor:
        if self._pre is None:
            raise InputError(f"{self.name}: predict() takes images for a model with one float32 (H, W, C) "
                             f"input and class scores out (this one: inputs "
                             f"{', '.join(map(str, self.plan.input_specs.values()))}, output "
                             f"{self.plan.output_specs[0]}); use run()")
        return self._pre

    def predict(self, x) -> np.ndarray:
        """Class probabilities for a PIL image, an image path, an (H, W, C) array
        of pixels, or a batch (list, or (N, H, W, C) array): shape (classes,)
        for one image, (N, classes) for a batch."""
        parts, single = self._preprocessor().chunks(x, self.chunk_size)
        probs = [self._probabilities(self.run(batch)) for batch in parts]
        out = probs[0] if len(probs) == 1 else np.concatenate(probs)
        return out[0] if single else out

    def _probabilities(self, out) -> np.ndarray:
        if isinstance(out, list):
            out = out[0]
        out = out.reshape(out.shape[0], int(np.prod(out.shape[1:]))).astype(np.float32)
        if self.metadata.get("output", "logits") != "probabilities" and out.shape[0]:
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        return out

    def top_k(self, x, k: int = 5) -> list[list[tuple[str, float]]]:
        """[(label, probability), ...] best first, for each image of ``x``."""
        probs = self.predict(x)
        probs = probs[None] if probs.ndim == 1 else probs
        labels = self.labels
        return [[(labels[i], float(p[i])) for i in np.argsort(-p, kind="stable")[:k]] for p in probs]

    # -- timing
    def profile(self, batch: int = 1, runs: int = 100, warmup: int = 5) -> list[dict]:
        """Per-layer time of a forward pass on a random batch: the rows of
        :meth:`layers` plus ``median_ms`` (median over ``runs`` profiled runs,
        each step's kernel call timed on its own), ``share`` (of the layers'
        total) and ``gmac_s`` (G MAC/s, of the layer's ``precision``; None for
        layers without MACs). The rows add up to the run minus the executor's
        own work (input and output copies)."""
        return self.benchmark(batch, runs, warmup, profile=True)[1]

    def benchmark(self, batch: int = 1, runs: int = 100, warmup: int = 5,
                  max_seconds: float | None = None, profile: bool = False):
        """(seconds of each timed ``run`` on a random batch, profile rows or None).

        With ``profile``, every timed run is followed by a profiled one (one
        timing per step), so both see the same machine; ``max_seconds`` stops
        early."""
        if batch < 1 or runs < 1:
            raise InputError(f"batch and runs must be >= 1, got batch {batch}, runs {runs}")
        rng = np.random.default_rng(0)
        # random values of each input (a bit tensor's packed bytes, padding bits 0)
        x = [(np.packbits(rng.random((batch,) + s.shape) < 0.5, axis=-1, bitorder="little") if s.dtype == "bits"
              else rng.standard_normal((batch,) + s.shape).astype(s.np_dtype))
             for s in self.plan.input_specs.values()]
        for _ in range(warmup):
            self.run(x)
            if profile:
                self._run_checked(x, list(self.plan.input_specs.items()), np.zeros(len(self.plan.steps)))
        times, steps = [], []
        deadline = None if max_seconds is None else time.perf_counter() + max_seconds
        for _ in range(runs):
            t0 = time.perf_counter()
            self.run(x)
            times.append(time.perf_counter() - t0)
            if profile:
                steps.append(np.zeros(len(self.plan.steps)))
                self._run_checked(x, list(self.plan.input_specs.items()), steps[-1])
            if deadline is not None and time.perf_counter() > deadline:
                break
        return times, (self._profile_rows(np.median(steps, axis=0), batch) if profile else None)

    def _profile_rows(self, seconds: np.ndarray, batch: int) -> list[dict]:
        total = float(seconds.sum()) or 1.0
        rows = []
        for row, t in zip(self.layers(), seconds):
            macs = (row["binary_macs"] + row["int8_macs"] + row["float_macs"]) * batch
            row.update(output=list(row["output"].shape), median_ms=float(t) * 1e3,
                       share=float(t) / total, gmac_s=macs / t / 1e9 if macs and t > 0 else None)
            rows.append(row)
        return rows

    # -- description
    def layers(self) -> list[dict]:
        """One dict per step: name, op, output shape, precision, MACs, constant bytes, kernel."""
        rows = []
        for step in self.plan.steps:
            out = step.outs[0]
            macs = step.op.cost(step.node, step.ins, step.outs)
            rows.append({
                "name": step.node.name, "op": step.node.op, "output": out,
                "precision": step.op.precision_of(step.ins),
                "binary_macs": macs["binary"], "int8_macs": macs["int8"], "float_macs": macs["float"],
                "bytes": sum(int(c.nbytes) for c in step.node.consts.values()),
                "kernel": _kernel_name(step.kernel),
            })
        return rows

    def summary(self, file=None) -> None:
        """Print a table of the layers: op, output shape, precision, MACs, bytes."""
        file = file or sys.stdout
        rows = self.layers()
        print(f"Model {self.name}: input {self.input_shape}, {len(rows)} layers, "
              f"{self.threads} thread(s)", file=file)
        head = f"{'layer':<24} {'op':<15} {'output':<22} {'prec':<7} {'binary MACs':>12} " \
               f"{'int8 MACs':>11} {'float MACs':>10} {'bytes':>9}  kernel"
        print(head, file=file)
        print("-" * len(head), file=file)
        for r in rows:
            print(f"{r['name'][:24]:<24} {r['op']:<15} {str(r['output']):<22} {r['precision']:<7} "
                  f"{r['binary_macs']:>12,} {r['int8_macs']:>11,} {r['float_macs']:>10,} "
                  f"{r['bytes']:>9,}  {r['kernel']}", file=file)
        tot = {k: sum(r[k] for r in rows) for k in ("binary_macs", "int8_macs", "float_macs", "bytes")}
        print("-" * len(head), file=file)
        print(f"{'total':<24} {'':<15} {'':<22} {'':<7} {tot['binary_macs']:>12,} "
              f"{tot['int8_macs']:>11,} {tot['float_macs']:>10,} {tot['bytes']:>9,}", file=file)

    def __repr__(self) -> str:
        return f"<bnnrt.Model {self.name} input={self.input_shape} layers={len(self.plan.steps)}>"


def _kernel_name(kernel) -> str:
    """The variant a layer runs, with the AVX-512 binary conv's lane layout
    ("avx512/w16"): which layout a layer takes depends on its shape."""
    variant = getattr(kernel, "variant", "?")
    layout = getattr(kernel, "layout", None)
    return f"{variant}/{layout}" if layout and variant == "avx512" else variant


def load(source, threads: int | None = None, resolver: str = "kernels") -> Model:
    """Load a .bnn model from a path, bytes or a binary file object.

    ``threads``: threads per inference (default: all cores). ``resolver="reference"``
    runs the numpy oracle instead of the kernels (slow; for checking)."""
    data, name = _format.read_source(source)
    graph = _format.loads(data, name)
    return Model(graph, threads=threads, name=name, resolver=resolver)


def save(model, path) -> None:
    """Write a Model (or a Graph) to a .bnn file (a path or a binary file object)."""
    graph = model.graph if isinstance(model, Model) else model
    _format.save(graph, path)
