"""Training modules and the PyTorch exporter (needs torch: the ``train`` extra).

The spec: folding a BatchNorm into thresholds/requantization constants is exact
against brute force; a network exported with ``from_torch`` gives, in bnnrt,
bit for bit the logits of the PyTorch network in eval mode; memory-lean
training computes the same gradients as plain training while keeping far
fewer bytes for backward.
"""

import gzip
import json
import struct
import subprocess
import sys

import numpy as np
import pytest

import bnnrt
from bnnrt import fold

torch = pytest.importorskip("torch")
nn = torch.nn

from bnnrt.convert import from_torch  # noqa: E402
from bnnrt.errors import GraphError, UnsupportedOpError  # noqa: E402
from bnnrt.train import blendnet20  # noqa: E402
from bnnrt.train.layers import pack_bool, unpack_bool  # noqa: E402

# ---------------------------------------------------------------------------
# folding, against brute force


def _random_affine(rng, n):
    g = rng.standard_normal(n) * rng.choice([0.01, 0.3, 3.0], n)
    g[::7] *= -1
    g[3::11] = 0.0
    return g, rng.standard_normal(n) * 5


def test_binarize_thresholds_match_bn_then_sign():
    rng = np.random.default_rng(0)
    g, b = _random_affine(rng, 64)
    scale = 1 / 16
    t, d = fold.binarize_thresholds(g, b, scale)
    q = np.arange(-128, 128)[:, None]
    expected_negative = g * (q * scale) + b < 0
    negative = np.where(d > 0, q < t, q > t)
    assert (negative == expected_negative).all()


def test_sign_thresholds_match_bn_then_sign():
    rng = np.random.default_rng(1)
    k = 9 * 17
    g, b = _random_affine(rng, 64)
    b *= 20
    thr, flip = fold.sign_thresholds(g, b, k)
    y = np.arange(-k, k + 1)[:, None]
    expected_positive = g * y + b >= 0
    y_kernel = np.where(flip, -y, y)            # the exporter negates flipped channels' weights
    assert ((y_kernel >= thr) == expected_positive).all()


def test_requant_from_affine_is_close_to_the_float_bn():
    rng = np.random.default_rng(2)
    g, b = rng.uniform(0.01, 2, 32) * np.where(rng.random(32) < 0.2, -1, 1), rng.standard_normal(32)
    in_scale, out_scale = rng.uniform(1e-4, 1e-2, 32), 1 / 16
    m, s, bias = fold.requant_from_affine(g, b, in_scale, out_scale)
    acc = rng.integers(-5000, 5000, (100, 32))
    got = bnnrt.quant.requantize(acc + bias, m, s)
    want = (g * in_scale * acc + b) / out_scale
    # bias rounding moves the result by at most half an accumulator step
    assert np.abs(got - want).max() <= 0.5 + 0.5 * np.abs(g * in_scale / out_scale).max() + 1e-6


def test_int8_weights_roundtrip():
    w = np.random.default_rng(3).standard_normal((8, 3, 3, 5))
    w[2] = 0
    q, scale = fold.int8_weights(w)
    assert q.dtype == np.int8 and np.abs(q).max() == 127
    assert np.abs(q * scale[:, None, None, None] - w).max() <= scale.max() / 2 + 1e-12


def test_pack_bool_roundtrip():
    t = torch.rand(3, 5, 7, 9) < 0.3
    assert torch.equal(unpack_bool(pack_bool(t), t.shape), t)
    assert pack_bool(t).numel() == (t.numel() + 7) // 8


# ---------------------------------------------------------------------------
# export round trip


def _randomize_bn(model, seed):
    """Give every BatchNorm trained-looking statistics, some gammas negative."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.2)
                m.weight[torch.rand(c, generator=gen) < 0.2] *= -1
                scale = 8.0 if name.endswith(("bn1", "bn2")) else 0.5
                m.bias.copy_(torch.randn(c, generator=gen) * 0.5)
                m.running_mean.copy_(torch.randn(c, generator=gen) * scale)
                m.running_var.copy_(torch.rand(c, generator=gen) * scale ** 2 + 0.1)
        model.head.bias.copy_(torch.randn(model.num_classes, generator=gen))


@pytest.mark.parametrize("width,shape,batch", [(1, (28, 28, 1), 5), (1, (32, 32, 3), 1), (2, (15, 17, 2), 3)])
def test_exported_model_equals_torch_eval_bit_for_bit(width, shape, batch):
    torch.manual_seed(width)
    model = blendnet20(width, shape, num_classes=7)
    _randomize_bn(model, seed=batch)
    model.eval()
    x = torch.randn(batch, shape[2], *shape[:2])
    with torch.no_grad():
        want = model(x).numpy()
    exported = from_torch(model, shape)
    for m in (exported, bnnrt.load(_roundtrip(exported))):
        got = np.asarray(m.run(x.permute(0, 2, 3, 1).contiguous().numpy())).reshape(batch, -1)
        np.testing.assert_array_equal(got, want)
    # the integer path really varies with the input (the test can fail)
    assert batch == 1 or np.ptp(want, axis=0).max() > 0


def _roundtrip(model):
    import io
    buf = io.BytesIO()
    bnnrt.save(model, buf)
    return buf.getvalue()


def test_reference_resolver_agrees_with_kernels():
    torch.manual_seed(5)
    model = blendnet20(1, (20, 20, 1))
    _randomize_bn(model, 5)
    exported = from_torch(model)
    x = np.random.default_rng(0).standard_normal((2, 20, 20, 1)).astype(np.float32)
    data = _roundtrip(exported)
    a = bnnrt.load(data).run(x)
    b = bnnrt.load(data, resolver="reference").run(x)
    np.testing.assert_array_equal(a, b)


def test_unsupported_module_is_named():
    model = blendnet20(1, (28, 28, 1))
    model.blocks[1].act = nn.ReLU()
    with pytest.raises(UnsupportedOpError, match=r"blocks\.1\.act \(ReLU\)"):
        from_torch(model)
    with pytest.raises(GraphError, match="needs an example input for a Sequential"):
        from_torch(nn.Sequential(nn.Conv2d(1, 2, 3)))       # not a BlendNet20: through ONNX, with an input


def test_input_shape_mismatch_is_an_error():
    with pytest.raises(GraphError, match="built for input"):
        from_torch(blendnet20(1, (28, 28, 1)), (32, 32, 3))


# ---------------------------------------------------------------------------
# memory-lean training


def _grads(model, x, y):
    model.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def _saved_bytes(model, x, y):
    total = [0]

    def pack(t):
        if isinstance(t, torch.Tensor) and not isinstance(t, nn.Parameter):
            total[0] += t.numel() * t.element_size()
        elif isinstance(t, tuple) and t and t[0] == "compact":
            total[0] += t[1].numel() * t[1].element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return total[0]


def test_lean_training_gives_the_same_gradients():
    torch.manual_seed(0)
    model = blendnet20(1, (16, 16, 1))
    model.train()
    x, y = torch.randn(6, 1, 16, 16), torch.randint(0, 10, (6,))
    plain = _grads(model.set_lean(False), x, y)
    lean = _grads(model.set_lean(True), x, y)
    for name in plain:
        torch.testing.assert_close(lean[name], plain[name], rtol=1e-4, atol=1e-6, msg=name)


def test_lean_training_keeps_far_fewer_bytes():
    torch.manual_seed(0)
    model = blendnet20(1, (28, 28, 1)).train()
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    plain = _saved_bytes(model.set_lean(False), x, y)
    lean = _saved_bytes(model.set_lean(True), x, y)
    assert lean * 2 <= plain, (plain, lean)


# ---------------------------------------------------------------------------
# the training command, end to end on a tiny stand-in for Fashion-MNIST


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def tiny_fmnist(tmp_path_factory):
    d = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 96), ("t10k", 40)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28)) + (labels * 19)[:, None, None]   # learnable
        _write_idx(d / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(d / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return d


def _train(*args):
    return subprocess.run([sys.executable, "-m", "bnnrt.train", "fashion-mnist", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def test_training_command_exports_checkpoints_and_resumes(tiny_fmnist, tmp_path):
    out = tmp_path / "tiny.bnn"
    common = ["--data", tiny_fmnist, "--batch", 32, "--threads", 1, "--out", out]
    proc = _train("--epochs", 1, *common)
    assert proc.returncode == 0, proc.stderr
    assert "epoch 1/1" in proc.stderr
    report = json.loads((tmp_path / "tiny.bnn.json").read_text())
    assert report["test_images"] == 40 and report["agreement"] == 40
    assert report["accuracy_torch"] == report["accuracy_bnnrt"]
    model = bnnrt.load(out)
    assert model.labels[0] == "T-shirt/top" and model.metadata["provenance"]["trained"] is True
    # a second run with more epochs resumes after epoch 1 from the checkpoint
    proc = _train("--epochs", 1, "--resume", *common)
    assert proc.returncode == 0 and "resumed" in proc.stderr
    proc = _train("--epochs", 2, "--resume", *common)
    assert proc.returncode != 0 and "different settings" in proc.stderr


def test_training_command_says_how_to_get_the_data(tmp_path):
    proc = _train("--data", tmp_path, "--epochs", 1, "--out", tmp_path / "x.bnn")
    assert proc.returncode == 2 and "apt-get install dataset-fashion-mnist" in proc.stderr


@pytest.mark.parametrize("arch", ["blendmixer", "mixer-binary"])
def test_training_command_trains_and_exports_a_mixer(tiny_fmnist, tmp_path, arch):
    out = tmp_path / "mixer.bnn"
    proc = _train("--arch", arch, "--dim", 19, "--token-hidden", 9, "--channel-hidden", 23, "--depth", 1,
                  "--epochs", 1, "--data", tiny_fmnist, "--batch", 32, "--threads", 1, "--out", out)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "mixer.bnn.json").read_text())
    assert report["agreement"] == 40 and report["accuracy_torch"] == report["accuracy_bnnrt"]
    assert report["config"]["dim"] == 19 and "depth=1" in report["architecture"]
    model = bnnrt.load(out)
    assert model.metadata["name"] == f"{arch}-fmnist"
    assert [n.op for n in model.graph.nodes].count("transpose") == 2
