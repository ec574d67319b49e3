"""Plan once, run many times: the executor.

:class:`Plan` is made once per model at load time. It orders the nodes,
infers and checks every tensor's shape and dtype (errors name the layer),
and builds each node's kernel (constants repacked once). It knows nothing of
the batch size.

:class:`Context` is a plan bound to one batch size: one 64-byte aligned arena
holds every intermediate tensor, placed by liveness (TFLite's arena planner:
largest first, best fit among tensors whose lifetimes overlap; a conv's
output may overwrite the fused skip it reads last, see ``_allocate``), and every
step is bound to its arena views. ``Context.run`` is then a loop of
zero-argument calls into C (runs of them merged into one call that
releases the GIL once). A context is used by one
thread at a time; the :class:`Plan` keeps a pool of them so that one model can
serve several Python threads at once.
"""

from __future__ import annotations

import heapq
import numbers
import os
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ._kernels import _core
from .errors import GraphError, InputError
from .graph import Graph, Node, TensorSpec
from .ops import Op, ReferenceKernel, get_op

ALIGN = 64
#: Work bound of the arena's best-fit placement (see Context._allocate).
ARENA_PLANNING_STEPS = 200_000
#: Largest part of a batch one thread runs at a time (batch-parallel runs).
PART_IMAGES = 8
#: The most memory a run may allocate: its arena plus the largest scratch any
#: layer takes while it runs (padded copies, numpy temporaries). A model that
#: needs more for one sample is refused at load, a batch that needs more at
#: run time; Model.run streams large batches in chunks well below it.
MAX_ARENA_BYTES = int(os.environ.get("BNNRT_MAX_ARENA_BYTES", 2 << 30))


def available_cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def max_threads() -> int:
    """The most threads a model may use: 4 x the CPUs (more only add
    contention) and at least 64. Far more would exhaust libgomp's stacks or
    the address space (threads=100000 crashed it)."""
    return max(64, 4 * available_cpus())


def resolve_threads(threads=None) -> int:
    """The one rule for a model's thread count: ``threads``, else
    BNNRT_NUM_THREADS, else OMP_NUM_THREADS, else the CPUs this process may
    run on; an integer in [1, max_threads()]."""
    source = "threads"
    if threads is None:
        for var in ("BNNRT_NUM_THREADS", "OMP_NUM_THREADS"):
            # OMP_NUM_THREADS may list nested levels ("4,2"): the first is ours
            value = os.environ.get(var, "").split(",")[0].strip()
            if value:
                threads, source = value, var
                break
        else:
            return available_cpus()
    try:
        n = int(threads) if isinstance(threads, str) or isinstance(threads, numbers.Integral) else None
    except ValueError:
        n = None
    if n is None or isinstance(threads, bool) or not 1 <= n <= max_threads():
        raise InputError(f"{source} must be an integer from 1 to {max_threads()} "
                         f"(4 x the {available_cpus()} CPUs, at least 64), got {threads!r}")
    return n


# A forked child (multiprocessing's default on Linux) inherits libgomp's
# thread pool and each plan's thread pool without their threads: entering
# either would wait forever. In the child every plan drops its pools and runs
# its kernels on one OpenMP thread each; batches still spread over Python
# threads, which start afresh.
_plans: weakref.WeakSet = weakref.WeakSet()
_in_forked_child = False


def _after_fork_in_child():
    global _in_forked_child
    _in_forked_child = True
    for plan in list(_plans):
        plan._lock = threading.Lock()
        plan._pool = {}
        plan._workers = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


@dataclass
class Step:
    node: Node
    op: Op
    ins: list[TensorSpec]
    outs: list[TensorSpec]
    kernel: object = None


def _order(graph: Graph) -> list[Node]:
    """Topological order, stable with respect to the file's order; rejects
    undefined tensors, tensors defined twice and cycles."""
    producer: dict[str, int] = {}
    for name in graph.inputs:
        producer[name] = -1
    for i, node in enumerate(graph.nodes):
        for t in node.outputs:
            if t in producer:
                raise GraphError(f"{node.where()}: tensor {t!r} is produced twice")
            producer[t] = i
    for node in graph.nodes:
        for t in node.inputs:
            if t not in producer:
                raise GraphError(f"{node.where()}: input {t!r} is not produced by any layer")
    for t in graph.outputs:
        if t not in producer:
            raise GraphError(f"graph output {t!r} is not produced by any layer")
    waiting = [sum(1 for t in set(n.inputs) if producer[t] >= 0) for n in graph.nodes]
    consumers: dict[int, list[int]] = {}
    for i, node in enumerate(graph.nodes):
        for t in set(node.inputs):
            if producer[t] >= 0:
                consumers.setdefault(producer[t], []).append(i)
    ready = [i for i, w in enumerate(waiting) if w == 0]     # a heap: the earliest in the file first
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(graph.nodes[i])
        for j in consumers.get(i, ()):
            waiting[j] -= 1
            if waiting[j] == 0:
                heapq.heappush(ready, j)
    if len(order) != len(graph.nodes):
        stuck = [graph.nodes[i].name for i, w in enumerate(waiting) if w > 0]
        raise GraphError(f"the graph has a cycle through layers {stuck[:5]}")
    return order


class Plan:
    """A validated, compiled graph (batch-independent)."""

    def __init__(self, graph: Graph, threads: int | None = None, resolver: str = "kernels"):
        if resolver not in ("kernels", "reference"):
            raise ValueError(f"resolver must be 'kernels' or 'reference', not {resolver!r}")
        if not graph.inputs:
            raise GraphError("the graph has no inputs")
        self.graph = graph
        self.threads = resolve_threads(threads)
        self.specs: dict[str, TensorSpec] = dict(graph.inputs)
        self.steps: list[Step] = []
        for node in _order(graph):
            op = get_op(node)
            ins = [self.specs[t] for t in node.inputs]
            outs = op.infer(node, ins)
            for t, spec in zip(node.outputs, outs):
                self.specs[t] = spec
            self.steps.append(Step(node, op, ins, outs))
        #: bytes per sample of the largest scratch a step takes while it runs
        self.scratch_bytes = max((step.op.reference_scratch_bytes(step.node, step.ins, step.outs)
                                  if resolver == "reference" else
                                  step.op.scratch_bytes(step.node, step.ins, step.outs) for step in self.steps),
                                 default=0)
        #: an upper bound of the memory one sample takes (every tensor, and the largest scratch)
        self.bytes_per_sample = sum(s.nbytes for s in self.specs.values()) + self.scratch_bytes
        if self.bytes_per_sample > MAX_ARENA_BYTES:
            worst = max(self.steps, key=lambda s: s.op.scratch_bytes(s.node, s.ins, s.outs))
            raise GraphError(f"the graph needs {self.bytes_per_sample:,} bytes per sample (its tensors, and "
                             f"{self.scratch_bytes:,} of scratch in {worst.node.where()}), more than the "
                             f"{MAX_ARENA_BYTES:,}-byte limit (BNNRT_MAX_ARENA_BYTES)")
        for step in self.steps:
            if resolver == "reference":
                step.kernel = ReferenceKernel(step.op, step.node, step.ins)
            else:
                step.kernel = step.op.kernel(step.node, step.ins)
        self._pool: dict[tuple[int, bool, int], list[Context]] = {}
        self._lock = threading.Lock()
        self._workers: ThreadPoolExecutor | None = None   # batch-parallel runs (see run)
        _plans.add(self)

    @property
    def input_specs(self) -> dict[str, TensorSpec]:
        return self.graph.inputs

    @property
    def output_specs(self) -> list[TensorSpec]:
        return [self.specs[t] for t in self.graph.outputs]

    def kernel_variants(self) -> dict[str, str]:
        """op -> variant of the kernels this plan runs (e.g. bconv2d: avx512)."""
        out: dict[str, str] = {}
        for step in self.steps:
            out.setdefault(step.node.op, getattr(step.kernel, "variant", "?"))
        return out

    # -- contexts
    def acquire(self, batch: int, preserve_intermediates: bool = False, threads: int | None = None) -> Context:
        threads = self.threads if threads is None else threads
        key = (batch, preserve_intermediates, threads)
        with self._lock:
            free = self._pool.get(key)
            if free:
                return free.pop()
            if len(self._pool) > 8:        # many batch sizes seen: forget the idle contexts
                self._pool = {k: v for k, v in self._pool.items() if k == key}
        return Context(self, batch, preserve_intermediates, threads)

    def release(self, ctx: Context) -> None:
        with self._lock:
            self._pool.setdefault((ctx.batch, ctx.preserve_intermediates, ctx.threads), []).append(ctx)

    def run(self, inputs: list[np.ndarray], timings: np.ndarray | None = None) -> list[np.ndarray]:
        """Run on already validated inputs (one array per graph input, same batch).

        ``timings`` (a float64 array, one slot per step) profiles the run: each
        step's bound call is timed on its own and its seconds added to its slot
        (in a batch-parallel run, those of the thread that was busy longest:
        the run lasts as long as it does).

        A batch of at least two images per thread is split into parts of at
        most PART_IMAGES, which the threads take in turn and run with
        single-threaded kernels (a context's calls release the GIL): no
        barrier between layers, and each core keeps its part's tensors in its
        caches. Smaller batches split each layer's rows between the threads
        instead."""
        n = inputs[0].shape[0]
        if self.threads > 1 and n >= 2 * self.threads:
            return self._run_parts(inputs, n, timings)
        return self._run_part(inputs, 1 if _in_forked_child else self.threads, timings)

    def _run_part(self, inputs: list[np.ndarray], threads: int, timings=None) -> list[np.ndarray]:
        ctx = self.acquire(inputs[0].shape[0], threads=threads)
        try:
            return ctx.run(inputs, timings)
        finally:
            self.release(ctx)

    def _run_parts(self, inputs: list[np.ndarray], n: int, timings=None) -> list[np.ndarray]:
        with self._lock:
            if self._workers is None:
                self._workers = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="bnnrt")
        # parts of at most PART_IMAGES: a part's tensors stay in its core's
        # caches, and threads take parts as they finish, so a core slowed by
        # other work on the machine simply runs fewer of them
        size = min(PART_IMAGES, -(-n // self.threads))
        starts = range(0, n, size)
        results: list = [None] * len(starts)
        busy = [None if timings is None else np.zeros(len(self.steps)) for _ in range(self.threads)]
        queue = iter(range(len(starts)))
        queue_lock = threading.Lock()

        def take_parts(thread):
            while True:
                with queue_lock:
                    i = next(queue, None)
                if i is None:
                    return
                a = starts[i]
                results[i] = self._run_part([x[a:a + size] for x in inputs], 1, busy[thread])

        helpers = [self._workers.submit(take_parts, t) for t in range(1, self.threads)]
        take_parts(0)
        for h in helpers:
            h.result()
        if timings is not None:
            timings += max(busy, key=np.sum)
        return [np.concatenate(o) for o in zip(*results)]

    def run_reference(self, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Every tensor of the graph computed by the numpy oracle."""
        values = dict(zip(self.graph.inputs, inputs))
        for step in self.steps:
            outs = step.op.reference(step.node, step.ins, [values[t] for t in step.node.inputs])
            values.update(zip(step.node.outputs, outs))
        return values


def _chain(calls: list) -> list:
    """Runs of consecutive C kernel calls merged into one call each (a
    :class:`~bnnrt._kernels._core.Chain`); other calls (numpy) stay as they are."""
    program, run = [], []
    for call in calls + [None]:
        if isinstance(call, _core.Bound):
            run.append(call)
            continue
        if run:
            program.append(_core.Chain(run) if len(run) > 1 else run[0])
            run = []
        if call is not None:
            program.append(call)
    return program


class Context:
    """A plan bound to a batch size: arena, views and bound kernel calls."""

    def __init__(self, plan: Plan, batch: int, preserve_intermediates: bool = False,
                 threads: int | None = None):
        if batch < 1:
            raise InputError(f"batch size must be >= 1, got {batch}")
        self.plan = plan
        self.batch = batch
        self.threads = plan.threads if threads is None else threads
        self.preserve_intermediates = preserve_intermediates
        offsets, size = self._allocate(plan, batch, preserve_intermediates)
        if size + plan.scratch_bytes * batch > MAX_ARENA_BYTES:
            raise InputError(f"a batch of {batch} needs a {size:,}-byte arena and {plan.scratch_bytes * batch:,} "
                             f"bytes of scratch, more than the {MAX_ARENA_BYTES:,}-byte limit; use smaller batches")
        raw = np.empty(size + ALIGN, dtype=np.uint8)
        start = (-raw.ctypes.data) % ALIGN
        self.arena = raw[start:start + size]
        self.views: dict[str, np.ndarray] = {}
        for name, off in offsets.items():
            spec = plan.specs[name]
            nbytes = spec.nbytes * batch
            self.views[name] = (self.arena[off:off + nbytes].view(spec.np_dtype)
                                .reshape((batch,) + spec.storage_shape))
        self.calls = []
        for step in plan.steps:
            arrays = [self.views[t] for t in step.node.inputs]
            outs = [self.views[t] for t in step.node.outputs]
            # kernels take (inputs..., output[, skip]): the skip operand of a conv comes last
            if step.op.skip_last and len(arrays) == 2:
                args = [arrays[0], outs[0], arrays[1]]
            else:
                args = arrays + outs
            self.calls.append(step.kernel.bind(*args, threads=self.threads))
        self.program = _chain(self.calls)

    @staticmethod
    def _allocate(plan: Plan, batch: int, preserve: bool):
        """Offsets of every tensor in the arena (largest first, best fit).

        A conv with a fused skip add writes its output over the skip when this
        conv is the skip's last reader and both have the same size: the
        kernels read each skip element just before writing the output element
        at the same place (elementwise epilogue), so the two share one buffer.
        A residual chain (x1 = f(x0) + x0, x2 = f(x1) + x1, ...) then lives in
        one buffer instead of two alternating ones (docs/performance.md has
        what that saves)."""
        n = len(plan.steps)
        first: dict[str, int] = {name: -1 for name in plan.graph.inputs}
        last: dict[str, int] = dict(first)
        for i, step in enumerate(plan.steps):
            for t in step.node.inputs:
                last[t] = i
            for t in step.node.outputs:
                first[t] = last[t] = i
        for t in plan.graph.outputs:
            last[t] = n
        if preserve:
            last = {t: n for t in last}
        sizes = {t: -(-plan.specs[t].nbytes * batch // ALIGN) * ALIGN for t in first}
        # buffer each tensor lives in: its own, or the skip's it overwrites
        home = {t: t for t in first}
        for i, step in enumerate(plan.steps):
            node = step.node
            if not (step.op.skip_last and len(node.inputs) == 2) or preserve:
                continue
            skip, out = node.inputs[1], node.outputs[0]
            if (last[skip] == i and first[skip] >= 0 and skip != node.inputs[0]
                    and plan.specs[skip].nbytes == plan.specs[out].nbytes):
                home[out] = home[skip]
        lo: dict[str, int] = {}
        hi: dict[str, int] = {}
        for t, h in home.items():
            lo[h] = min(lo.get(h, first[t]), first[t])
            hi[h] = max(hi.get(h, last[t]), last[t])
        order = sorted(lo, key=lambda h: (-sizes[h], lo[h], h))
        buffers: dict[str, int] = {}
        # Placing a buffer visits the steps of its lifetime; when those add up
        # to more than ARENA_PLANNING_STEPS (thousands of tensors alive at once:
        # a hostile fan-out, not a network), the buffers are laid end to end
        # instead, in linear time (their sum per sample was bounded at load).
        if preserve or sum(hi[h] - lo[h] + 1 for h in order) > ARENA_PLANNING_STEPS:
            offset = 0
            for h in order:
                buffers[h] = offset
                offset += sizes[h]
            return {t: buffers[home[t]] for t in first}, offset
        # the buffers placed so far that are live at each step (steps -1..n at
        # index 0..n+1): a buffer meets only those of its own steps, so a long
        # chain of short-lived tensors is placed in linear time
        live: list[list[str]] = [[] for _ in range(n + 2)]
        size = 0
        for h in order:
            met = {b for step in live[lo[h] + 1:hi[h] + 2] for b in step}
            busy = sorted((buffers[b], buffers[b] + sizes[b]) for b in met)
            best, gap_start = None, 0
            for b_lo, b_hi in busy:
                if b_lo - gap_start >= sizes[h] and (best is None or b_lo - gap_start < best[1]):
                    best = (gap_start, b_lo - gap_start)
                gap_start = max(gap_start, b_hi)
            buffers[h] = best[0] if best else gap_start
            size = max(size, buffers[h] + sizes[h])
            for step in live[lo[h] + 1:hi[h] + 2]:
                step.append(h)
        return {t: buffers[home[t]] for t in first}, size

    def run(self, inputs: list[np.ndarray], timings: np.ndarray | None = None) -> list[np.ndarray]:
        """Copy the inputs in, run the program, copy the outputs out. With
        ``timings`` (one slot per step), the steps' calls run one by one
        instead of chained, each timed and its seconds added to its slot."""
        for name, x in zip(self.plan.graph.inputs, inputs):
            np.copyto(self.views[name], x, casting="unsafe")
        if timings is None:
            for call in self.program:
                call()
        else:
            clock = time.perf_counter
            for i, call in enumerate(self.calls):
                t0 = clock()
                call()
                timings[i] += clock() - t0
        return [self.views[t].copy() for t in self.plan.graph.outputs]
