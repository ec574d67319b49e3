"""The planner and executor: order, arena, batch sizes, threads, and agreement
of the kernels with the numpy oracle on whole graphs."""

import threading

import numpy as np
import pytest

import bnnrt
from bnnrt import zoo
from bnnrt.errors import GraphError, InputError
from bnnrt.plan import Context, Plan

from conftest import every_op_graph


def _integer_outputs_equal(plan, x):
    """Kernels and oracle agree on every tensor (bit-exact on integers)."""
    ctx = plan.acquire(x.shape[0], preserve_intermediates=True)
    ctx.run([x])
    ref = plan.run_reference([x])
    for name, value in ref.items():
        got = ctx.views[name]
        spec = plan.specs[name]
        if spec.dtype == "float32":
            np.testing.assert_allclose(got, value, rtol=1e-4, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(got, value, err_msg=f"tensor {name} ({spec})")


@pytest.mark.parametrize("batch", [1, 5])
def test_every_op_graph_matches_oracle(batch):
    plan = Plan(every_op_graph(seed=batch), threads=2)
    x = np.random.default_rng(batch).standard_normal((batch, 9, 7, 3)).astype(np.float32)
    _integer_outputs_equal(plan, x)


@pytest.mark.parametrize("width,batch", [(1, 1), (1, 3), (2, 2)])
def test_blendnet_matches_oracle(width, batch):
    model = zoo.blendnet20(width=width, seed=width, threads=2)
    x = np.random.default_rng(0).standard_normal((batch, 32, 32, 3)).astype(np.float32)
    _integer_outputs_equal(model.plan, x)


def test_reference_resolver_gives_the_same_outputs(blendnet):
    oracle = bnnrt.Model(blendnet.graph, resolver="reference")
    x = np.random.default_rng(5).standard_normal((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(oracle.run(x), blendnet.run(x), rtol=1e-6)


def test_arena_reuses_memory_but_never_overlaps_live_tensors(blendnet):
    plan = blendnet.plan
    offsets, size = Context._allocate(plan, 4, preserve=False)
    _, size_all = Context._allocate(plan, 4, preserve=True)
    assert size < size_all / 2          # liveness-based reuse pays
    # no two tensors alive at the same step share bytes
    n = len(plan.steps)
    live = {}
    for i, step in enumerate(plan.steps):
        for t in step.node.inputs + step.node.outputs:
            live.setdefault(t, [i, i])
            live[t][0] = min(live[t][0], i)
            live[t][1] = max(live[t][1], i)
    for name in plan.graph.inputs:
        live[name][0] = -1
    for t in plan.graph.outputs:
        live[t][1] = n
    nbytes = {t: plan.specs[t].nbytes * 4 for t in live}
    # the one sharing allowed: a conv's output written over its fused skip
    # at the step where the skip is read for the last time
    in_place = set()
    for i, step in enumerate(plan.steps):
        if step.op.skip_last and len(step.node.inputs) == 2 and live[step.node.inputs[1]][1] == i:
            in_place.add((step.node.inputs[1], step.node.outputs[0]))
    shared = 0
    items = sorted(live)
    for i, a in enumerate(items):
        for b in items[i + 1:]:
            if live[a][0] <= live[b][1] and live[b][0] <= live[a][1]:
                if (a, b) in in_place or (b, a) in in_place:
                    shared += offsets[a] == offsets[b]
                    continue
                assert (offsets[a] + nbytes[a] <= offsets[b] or offsets[b] + nbytes[b] <= offsets[a]), (a, b)
    # BlendNet's residual blocks whose skip is not a 1x1 conv write in place
    assert shared >= 5


def test_arena_is_aligned(blendnet):
    ctx = blendnet.plan.acquire(2)
    assert ctx.arena.ctypes.data % 64 == 0
    for view in ctx.views.values():
        assert view.ctypes.data % 64 == 0


def test_batches_of_any_size_agree_with_single_images(blendnet):
    x = np.random.default_rng(2).standard_normal((7, 32, 32, 3)).astype(np.float32)
    together = blendnet.run(x)
    alone = np.concatenate([blendnet.run(x[i:i + 1]) for i in range(7)])
    np.testing.assert_array_equal(together, alone)


def test_large_batches_run_in_chunks(monkeypatch, blendnet):
    import bnnrt.model
    monkeypatch.setattr(bnnrt.model, "MAX_CHUNK", 3)
    x = np.random.default_rng(3).standard_normal((8, 32, 32, 3)).astype(np.float32)
    chunked = blendnet.run(x)
    monkeypatch.setattr(bnnrt.model, "MAX_CHUNK", 256)
    np.testing.assert_array_equal(chunked, blendnet.run(x))


def test_one_model_many_python_threads(blendnet):
    rng = np.random.default_rng(4)
    inputs = [rng.standard_normal((1 + i % 3, 32, 32, 3)).astype(np.float32) for i in range(8)]
    expected = [blendnet.run(x) for x in inputs]
    failures = []

    def worker(i):
        for _ in range(25):
            out = blendnet.run(inputs[i])
            if not np.array_equal(out, expected[i]):
                failures.append(i)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("batch", [3, 7])
def test_thread_count_does_not_change_results(threads, batch, blendnet):
    """Batch 3 splits each layer's rows between threads; batch 7 (two images
    or more per thread) splits the batch into one part per thread."""
    model = bnnrt.Model(blendnet.graph, threads=threads)
    x = np.random.default_rng(6).standard_normal((batch, 32, 32, 3)).astype(np.float32)
    serial = bnnrt.Model(blendnet.graph, threads=1)
    np.testing.assert_array_equal(model.run(x), serial.run(x))
    assert model.threads == threads


def test_invalid_thread_count():
    with pytest.raises(ValueError):
        zoo.blendnet20(threads=0)


def test_zero_batch_returns_empty(blendnet):
    out = blendnet.run(np.zeros((0, 32, 32, 3), np.float32))
    assert out.shape == (0, 1, 1, 10)


def test_graph_errors_name_layer_and_shapes():
    g = every_op_graph()
    node = next(n for n in g.nodes if n.op == "add_int8")
    node.inputs = [node.inputs[0], g.nodes[1].outputs[0]]     # the stem: wrong spatial size
    with pytest.raises(GraphError, match=r"layer 'add_int8_0' \(add_int8\): adds int8\[5, 4, 17\] and int8\[9, 7, 17\]"):
        Plan(g)


def test_kernel_variants_are_reported(blendnet):
    variants = blendnet.plan.kernel_variants()
    assert set(variants) == {n.op for n in blendnet.graph.nodes}
    from bnnrt import cpu_info
    assert variants["dequantize"] == "numpy"
    assert variants["bconv2d"] == cpu_info()["kernels"]["bconv2d"]          # the best this CPU runs
    assert all(isinstance(v, str) and v for v in variants.values())


@pytest.mark.parametrize("change,match", [
    (lambda n: n.consts.__setitem__("weights", np.full(n.consts["weights"].shape, 0xFF, np.uint8)),
     "bits set beyond channel 17"),
    (lambda n: n.consts.pop("thresholds"), "missing constant 'thresholds'"),
    (lambda n: n.consts.__setitem__("thresholds", n.consts["thresholds"].astype(np.int16)),
     "constant 'thresholds' has dtype int16, expected int32"),
    (lambda n: n.attrs.__setitem__("output", "float32"), "attribute 'output' must be one of"),
    (lambda n: n.attrs.__setitem__("pad_value", 2), "attribute 'pad_value'"),
])
def test_binary_conv_constants_are_checked_at_load(change, match):
    """The op validates a binary conv's weights and its epilogue once, at load,
    and names the layer (the kernel glue checks only memory safety)."""
    b = bnnrt.GraphBuilder()
    x = b.sign_bits(b.input("x", (5, 5, 17)))
    w = np.zeros((8, 3, 3, 3), np.uint8)
    b.bconv2d(x, w, cin=17, pads=(1, 1, 1, 1), output="bits", thresholds=np.zeros(8, np.int32), name="conv")
    g = b.build("conv")
    change(g.nodes[-1])
    with pytest.raises(GraphError, match=r"layer 'conv' \(bconv2d\): .*" + match):
        Plan(g)


def test_int8_requantization_that_would_overflow_is_refused():
    """(y + bias) * multiplier is computed in 64 bits (numerics.md): a layer
    whose weights let it overflow is refused at load (it would silently wrap
    in the kernels and the oracle alike), one that cannot is accepted."""
    def graph(weight, multiplier, output="int8", bias=0):
        b = bnnrt.GraphBuilder()
        x = b.quantize(b.input("x", (3, 3, 16384)), scale=1.0)
        w = np.full((2, 3, 3, 16384), weight, np.int8)
        kw = dict(multiplier=np.full(2, multiplier, np.int32), shift=np.full(2, 62, np.int8)) if output == "int8" else {}
        b.conv2d_int8(x, w, bias=np.full(2, bias, np.int32), output=output, name="conv", **kw)
        return b.build("conv")
    Plan(graph(1, 2**31 - 1))            # |y| <= 128 * 147456 = 2^24.2: fits
    with pytest.raises(GraphError, match=r"layer 'conv' \(conv2d_int8\): channel 0: the requantization"):
        Plan(graph(-128, 2**31 - 1, bias=2**31 - 1))       # |y| up to 2^31.2, + bias 2^31, * 2^31 > 2^63
    with pytest.raises(GraphError, match=r"int32 output y \+ bias can reach"):
        Plan(graph(127, 0, output="int32", bias=2**31 - 1))


@pytest.mark.parametrize("threads,env", [(100000, None), (10**30, None), ("2", None), (None, "100000"),
                                         (None, "lots"), (True, None)])
def test_thread_count_is_bounded(threads, env, monkeypatch, blendnet):
    """One rule for the thread count: an integer from 1 to max_threads(), from
    the argument or BNNRT_NUM_THREADS (100000 threads crashed libgomp)."""
    from bnnrt.plan import max_threads
    if env is not None:
        monkeypatch.setenv("BNNRT_NUM_THREADS", env)
    if threads == "2":
        assert bnnrt.Model(blendnet.graph, threads="2").threads == 2
        return
    with pytest.raises(InputError, match=f"from 1 to {max_threads()}"):
        bnnrt.Model(blendnet.graph, threads=threads)


def _predict_in_child(model, x, queue):
    queue.put(model.run(x))


@pytest.mark.parametrize("batch", [1, 8])
def test_forked_worker_runs(batch, blendnet):
    """A model used in the parent, with two threads (libgomp's team for batch
    1, the plan's thread pool for batch 8), still runs in a forked child
    (multiprocessing's default on Linux) and gives the same results."""
    import multiprocessing
    model = bnnrt.Model(blendnet.graph, threads=2)
    x = np.random.default_rng(batch).standard_normal((batch, 32, 32, 3)).astype(np.float32)
    want = model.run(x)
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_predict_in_child, args=(model, x, queue))
    child.start()
    try:
        got = queue.get(timeout=60)
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
    np.testing.assert_array_equal(got, want)
    assert child.exitcode == 0
