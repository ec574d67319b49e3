"""Loading and running hostile model files in a child process, so that a
crash, a hang or a memory bomb is counted instead of ending the run.

A ``Sandbox`` keeps one worker process (multiprocessing, spawn: no state
inherited from the parent) that has an address-space limit (``RLIMIT_AS``;
under AddressSanitizer, ASan's own allocation and RSS limits instead)
and hands it one case at a time; the parent waits at most ``timeout`` seconds
for the answer, plus the time the loaded model's arithmetic takes at a slow
rate (``work_seconds``: a hang is no answer long after the work is done). A worker that dies (a signal, an abort) or overruns is
replaced, so one bad case costs one restart, not the run.

Outcomes:

* ``ok``: the file loaded and ran once (``predict`` too, where the model takes images);
* ``refused``: a ``bnnrt.BnnrtError`` subclass, the clean answer to a bad file;
* findings: ``exception`` (any other exception type), ``memory`` (MemoryError:
  the address-space limit reached), ``crash`` (the worker died, e.g. SIGSEGV or
  SIGABRT), ``timeout`` (no answer within that deadline) and
  ``nonfinite`` (finite inputs gave NaN or infinite outputs: a constant that
  should have been refused reached the arithmetic, a silent wrong answer),
  ``mismatch`` (the kernels and the numpy oracle, ``Plan.run_reference``,
  disagree on a graph output: one of them is wrong; not counted where the
  oracle's own float arithmetic overflowed, whose infinities and NaNs depend
  on the order of the sums) and ``opaque`` (a bnnrt
  error whose message only wraps a Python exception, e.g. "(ZeroDivisionError:
  ...)", instead of saying what is wrong). A case can also be a file
  equivalent to its seed (the same model written another valid way): then
  ``false-refusal`` (a bnnrt error for a valid file) and ``mismatch`` (other
  outputs than the seed's) are findings too; or a certainly invalid file (its
  recorded shapes contradict its operators, two graph inputs share a name):
  then ``accepted`` (it loaded) is a finding.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import time
import traceback

FINDING_KINDS = ("exception", "memory", "crash", "timeout", "nonfinite", "mismatch", "opaque", "false-refusal",
                 "accepted")

#: A refusal whose message only wraps a Python exception says nothing of what is wrong with the file.
OPAQUE = re.compile(r"\b(ZeroDivisionError|TypeError|KeyError|IndexError|AttributeError|OverflowError"
                    r"|RecursionError|UnboundLocalError|AssertionError)\b")

#: Address space of a worker: far above what the seeds need (under 300 MB), far below the machine.
DEFAULT_AS_BYTES = 3 << 30
DEFAULT_TIMEOUT = 10.0

#: How fast a worker is assumed to go at worst (kernels and the numpy oracle,
#: one thread): a case's deadline is ``timeout`` plus its model's work at
#: these rates, so that a small input padded to 500 x 500 pixels (seconds of
#: honest arithmetic) is not taken for a hang. A model whose work would take
#: longer than MAX_WORK_SECONDS is loaded but not run.
MACS_PER_SECOND = 2e8
ELEMENTS_PER_SECOND = 2e7
MAX_WORK_SECONDS = 60.0


def _under_asan() -> bool:
    """Whether workers run with AddressSanitizer preloaded (tools/sanitize.sh)."""
    return "libasan" in os.environ.get("LD_PRELOAD", "")


def _asan_limits(as_bytes) -> str:
    """ASAN_OPTIONS that bound a worker's memory as RLIMIT_AS would: ASan
    reserves terabytes of shadow address space at start, so under an
    address-space limit every later allocation would fail. A too large
    allocation returns NULL instead (numpy's MemoryError), and a worker whose
    resident memory passes the limit is killed (a crash)."""
    mb = as_bytes >> 20
    return f"allocator_may_return_null=1:max_allocation_size_mb={mb}:hard_rss_limit_mb={mb}"


def _limit_worker(as_bytes):
    import resource
    if not _under_asan():
        resource.setrlimit(resource.RLIMIT_AS, (as_bytes, as_bytes))
    # one thread everywhere: libgomp and OpenBLAS reserve address space per thread
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BNNRT_NUM_THREADS"):
        os.environ[var] = "1"


def _inputs(model, rng):
    import numpy as np
    arrays = []
    for spec in model.plan.input_specs.values():
        shape = (2,) + tuple(spec.storage_shape)
        if spec.dtype == "bits":
            x = rng.integers(0, 256, shape, dtype=np.uint8)
            if spec.channels % 8:            # bits past the channel count must be 0 (run() refuses them)
                x[..., -1] &= (1 << (spec.channels % 8)) - 1
        elif np.dtype(spec.np_dtype).kind == "f":
            x = rng.standard_normal(shape).astype(spec.np_dtype)
        else:
            info = np.iinfo(spec.np_dtype)
            x = rng.integers(max(info.min, -128), min(info.max, 127) + 1, shape).astype(spec.np_dtype)
        arrays.append(x)
    return arrays


def _differs(got, want) -> str:
    """Why the kernels' output ``got`` is not the oracle's ``want``, or "".
    Floats agree to float32 accuracy relative to the output's magnitude;
    integers exactly, but for off-by-one roundings in at most 1% of the
    values (a float op upstream of a quantize may round either way)."""
    import numpy as np
    if got.dtype.kind == "f":
        want = want.astype(np.float64)
        scale = max(1.0, float(np.abs(want[np.isfinite(want)]).max(initial=0)))
        bad = ~np.isclose(got, want, rtol=1e-3, atol=1e-4 * scale, equal_nan=True)
        return f"{np.count_nonzero(bad)} of {got.size} values differ (max {np.abs(got - want)[bad].max():.3g})" \
            if bad.any() else ""
    diff = np.abs(got.astype(np.int64) - want.astype(np.int64))
    if diff.max(initial=0) > 1 or np.count_nonzero(diff) > max(1, diff.size // 100):
        return f"{np.count_nonzero(diff)} of {diff.size} values differ (max {diff.max()})"
    return ""


def work_seconds(model, batch: int) -> float:
    """Seconds a case may take beyond its timeout: the model's MACs and output
    elements, for the kernels' run and the oracle's (``batch`` samples each)
    and one prediction, at MACS_PER_SECOND and ELEMENTS_PER_SECOND."""
    import numpy as np
    rows = model.layers()
    macs = sum(r["binary_macs"] + r["int8_macs"] + r["float_macs"] for r in rows)
    elements = sum(int(np.prod(r["output"].shape)) for r in rows)
    return (2 * batch + 1) * (macs / MACS_PER_SECOND + elements / ELEMENTS_PER_SECOND)


def _load(target, data):
    import bnnrt
    from bnnrt.convert import from_onnx, from_tflite
    if target == "bnn":
        return bnnrt.load(data, threads=1)
    return (from_onnx if target == "onnx" else from_tflite)(data, threads=1)


def _compare_equivalent(seed_model, inputs, outs, tolerance) -> tuple[str, str] | None:
    """A finding when a file equivalent to the seed gives other outputs than the seed does."""
    import numpy as np
    want = seed_model.run(inputs)
    want = want if isinstance(want, list) else [want]
    if len(want) != len(outs):
        return "mismatch", f"equivalent: {len(outs)} outputs, the seed has {len(want)}"
    for k, (got, ref) in enumerate(zip(outs, want)):
        if got.shape != ref.shape:
            return "mismatch", f"equivalent: output {k} has shape {got.shape}, the seed's {ref.shape}"
        if tolerance:
            err = float(np.abs(got.astype(np.float64) - ref).max(initial=0))
            bound = tolerance * max(1e-6, float(np.abs(ref).max(initial=0)))
            differs = f"max difference {err:.3g} > {bound:.3g}" if err > bound else ""
        else:
            differs = "" if np.array_equal(got, ref) else f"{np.count_nonzero(got != ref)} of {got.size} values differ"
        if differs:
            return "mismatch", f"equivalent: output {k} differs from the seed's: {differs}"
    return None


def run_case(target: str, data: bytes, equivalence=None, extend=None) -> tuple[str, str]:
    """Load (``target`` "bnn": ``bnnrt.load``; "tflite": ``from_tflite``;
    "onnx": ``from_onnx``) and
    run once, in this process: (outcome, detail). With ``equivalence`` (the
    seed's bytes, a tolerance), the file must load and give the seed's
    outputs; with ``"must-refuse"`` it must not load. ``extend(seconds)``,
    called once the model has loaded, tells the sandbox how much longer than
    its timeout the run may take (``work_seconds``)."""
    import numpy as np
    from bnnrt.errors import BnnrtError
    stage = "load"
    try:
        must_refuse = equivalence == "must-refuse"
        seed_model = _load(target, equivalence[0]) if equivalence and not must_refuse else None
        model = _load(target, data)
        if must_refuse:
            return "accepted", "load: a certainly invalid file loaded"
        stage = "run"
        rng = np.random.default_rng(0)
        inputs = _inputs(model, rng)
        extra = work_seconds(model, inputs[0].shape[0] if inputs else 1)
        if extra > MAX_WORK_SECONDS:
            return "ok", f"load (not run: about {extra:.0f} s of work)"
        if extend is not None:
            extend(extra)
        outs = model.run(inputs)
        outs = outs if isinstance(outs, list) else [outs]
        if seed_model is not None:
            stage = "equivalent"
            verdict = _compare_equivalent(seed_model, inputs, outs, equivalence[1])
            if verdict:
                return verdict
        stage = "oracle"
        # float32 sums beyond its range are inf or NaN by the order of their
        # terms: where the oracle's own arithmetic overflowed (finite operands,
        # an infinite result), NaN/inf outputs and differences are honest
        overflowed = []
        with np.errstate(over="call", invalid="call", call=lambda kind, flag: overflowed.append(kind)):
            ref = model.plan.run_reference(inputs)
        for out in outs:
            if out.dtype.kind == "f" and not np.isfinite(out).all():
                if "overflow" in overflowed:
                    return "ok", "run (NaN/inf outputs where the oracle's float arithmetic overflowed too)"
                return "nonfinite", f"run: finite inputs gave {np.count_nonzero(~np.isfinite(out))} NaN/inf outputs"
        for name, out in zip(model.plan.graph.outputs, outs):
            differs = _differs(out, np.asarray(ref[name]).reshape(out.shape))
            if differs and overflowed:
                return "ok", f"oracle (inconclusive: the reference's float arithmetic overflowed, {overflowed[0]})"
            if differs:
                return "mismatch", f"oracle: output {name!r} ({out.dtype}{list(out.shape[1:])}): {differs}"
        if model._takes_images():
            stage = "predict"
            spec = next(iter(model.plan.input_specs.values()))
            probs = model.predict(rng.integers(0, 256, spec.shape, dtype=np.uint8))
            if not np.isfinite(probs).all():
                return "nonfinite", "predict: NaN/inf probabilities for a finite image"
    except BaseException as e:  # noqa: BLE001 (classified: a bnnrt error or a finding)
        if equivalence and equivalence != "must-refuse" and stage != "oracle" and isinstance(e, BnnrtError):
            return "false-refusal", f"{stage}: {type(e).__name__}: {str(e)[:300]}"
        return classify_exception(e, stage)
    return "ok", stage


def classify_exception(e: BaseException, stage: str) -> tuple[str, str]:
    """(outcome, detail) of an exception raised at ``stage``."""
    from bnnrt.errors import BnnrtError
    if isinstance(e, BnnrtError):
        kind = "opaque" if OPAQUE.search(str(e)) else "refused"
        return kind, f"{stage}: {type(e).__name__}: {str(e)[:300]}"
    if isinstance(e, MemoryError):
        return "memory", f"{stage}: {type(e).__name__}: {str(e)[:300]}"
    tb = traceback.extract_tb(e.__traceback__)
    where = f"{os.path.basename(tb[-1].filename)}:{tb[-1].lineno}" if tb else "?"
    return "exception", f"{stage}: {type(e).__name__} at {where}: {str(e)[:300]}"


def run_call(module: str, name: str, args: tuple) -> tuple[str, str]:
    """``module.name(*args)`` in this process, classified like a case: "ok"
    with the result's repr, "refused" for a bnnrt error, or a finding."""
    import importlib
    try:
        result = getattr(importlib.import_module(module), name)(*args)
    except BaseException as e:  # noqa: BLE001
        return classify_exception(e, name)
    return "ok", repr(result)[:300]


def _worker(conn, as_bytes):
    _limit_worker(as_bytes)
    import bnnrt  # noqa: F401  (imported before the first case: its time is not a case's)
    import bnnrt.convert._tflite  # noqa: F401
    conn.send("ready")
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        if job[0] == "call":
            conn.send(run_call(*job[1:]))
        else:
            conn.send(run_case(*job[1:], extend=lambda seconds: conn.send(("extend", seconds))))


class Sandbox:
    """One limited worker process, replaced whenever a case kills or hangs it."""

    def __init__(self, as_bytes: int = DEFAULT_AS_BYTES, timeout: float = DEFAULT_TIMEOUT):
        self.as_bytes, self.timeout = as_bytes, timeout
        self._ctx = multiprocessing.get_context("spawn")
        self._proc = self._conn = None
        self.restarts = 0

    def _start(self):
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_worker, args=(child, self.as_bytes), daemon=True)
        saved = os.environ.get("ASAN_OPTIONS")
        if _under_asan():       # read by ASan when the worker starts, so set for the start only
            os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [saved, _asan_limits(self.as_bytes)]))
        try:
            self._proc.start()
        finally:
            if saved is None:
                os.environ.pop("ASAN_OPTIONS", None)
            else:
                os.environ["ASAN_OPTIONS"] = saved
        child.close()
        self._conn = parent
        try:
            ready = parent.poll(120) and parent.recv() == "ready"
        except EOFError:
            ready = False
        if not ready:
            self._kill()
            raise RuntimeError("the sandbox worker did not start (a script using Sandbox needs "
                               "`if __name__ == '__main__':`, as multiprocessing's spawn does)")

    def _kill(self):
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
            self._conn.close()
            self._proc = self._conn = None
            self.restarts += 1

    def run(self, target: str, data: bytes, equivalence=None) -> tuple[str, str, float]:
        """(outcome, detail, seconds) of one case: ``data`` loaded as ``target``
        ("bnn" or "tflite") and run (see ``run_case``)."""
        return self._ask(("case", target, data, equivalence))

    def call(self, module: str, name: str, *args) -> tuple[str, str, float]:
        """(outcome, detail, seconds) of ``module.name(*args)`` run in the worker."""
        return self._ask(("call", module, name, args))

    def _ask(self, job) -> tuple[str, str, float]:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        t0 = time.monotonic()
        deadline = t0 + self.timeout
        try:
            self._conn.send(job)
            while True:
                answered = self._conn.poll(max(0.0, deadline - time.monotonic()))
                result = self._conn.recv() if answered else None
                if not (isinstance(result, tuple) and result and result[0] == "extend"):
                    break
                deadline += result[1]       # the loaded model's work (run_case's extend)
        except (EOFError, OSError, BrokenPipeError):
            answered, result = True, None
        seconds = time.monotonic() - t0
        if result is not None:
            if result[0] == "memory":
                self._kill()     # a worker that hit its limit may hold the memory still
            return result[0], result[1], seconds
        if not answered:
            self._kill()
            return "timeout", f"no answer within {deadline - t0:.3g} s", seconds
        self._proc.join(5)
        code = self._proc.exitcode
        self._kill()
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return "crash", f"the worker died of {name}", seconds
        return "crash", f"the worker exited with status {code}", seconds

    def close(self):
        if self._proc is not None and self._conn is not None:
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._proc.join(5)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join()
            self._proc = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
