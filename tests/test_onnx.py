"""The ONNX importer on binary networks written and exported as PyTorch BNN
research code does (Bi-Real-style), with both torch.onnx exporters: bnnrt's
outputs against PyTorch's eval outputs, every binary layer on a binary kernel."""

import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxscript")      # the dynamo exporter's translator

import torch.nn as nn                  # noqa: E402
import torch.nn.functional as F        # noqa: E402
from onnx import TensorProto, helper   # noqa: E402

from bnnrt.convert import from_onnx, importer_for   # noqa: E402
from bnnrt.errors import BnnrtError, GraphError, UnsupportedOpError   # noqa: E402

#: Pre-sign values of the compared inputs keep this distance from 0: a sign
#: that float rounding could flip makes any two runtimes differ (onnx.md §2).
MARGIN = 1e-5


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These nets are tiny: torch's thread pool only costs (seconds on a
    loaded machine), so the module runs torch on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class ApproxSign(nn.Module):
    """Bi-Real's activation, as its code writes it: sign forward, a
    piecewise polynomial's gradient backward."""

    def forward(self, x):
        out_forward = torch.sign(x)
        mask1, mask2, mask3 = x < -1, x < 0, x < 1
        out1 = (-1) * mask1.type(torch.float32) + (x * x + 2 * x) * (1 - mask1.type(torch.float32))
        out2 = out1 * mask2.type(torch.float32) + (-x * x + 2 * x) * (1 - mask2.type(torch.float32))
        out3 = out2 * mask3.type(torch.float32) + 1 * (1 - mask3.type(torch.float32))
        return out_forward.detach() - out3.detach() + out3


class HardBinaryConv(nn.Module):
    """Bi-Real's binary conv: mean |W| per output channel times sign(W), the
    clip STE around it (onnx.md P8)."""

    def __init__(self, cin, cout, stride=1, k=3):
        super().__init__()
        self.stride, self.padding, self.shape = stride, k // 2, (cout, cin, k, k)
        self.weight = nn.Parameter(torch.rand((cout * cin * k * k, 1)) * 0.001 - 0.0005)

    def forward(self, x):
        real = self.weight.view(self.shape)
        alpha = torch.mean(torch.mean(torch.mean(abs(real), dim=3, keepdim=True), dim=2, keepdim=True),
                           dim=1, keepdim=True).detach()
        clipped = torch.clamp(real, -1.0, 1.0)
        w = (alpha * torch.sign(real)).detach() - clipped.detach() + clipped
        return F.conv2d(x, w, stride=self.stride, padding=self.padding)


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.act, self.conv, self.bn = ApproxSign(), HardBinaryConv(cin, cout, stride), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.AvgPool2d(2, 2) if stride != 1 else nn.Identity(),
                                      nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn(self.conv(self.act(x)))
        # the shortcut after the conv, as Bi-Real's code orders it
        return out + (x if self.down is None else self.down(x))


class BiReal(nn.Module):
    def __init__(self, widths=(24, 24, 40, 40), classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]))
        blocks, cin = [], widths[0]
        for w in widths:
            blocks.append(Block(cin, w, 2 if w != cin else 1))
            cin = w
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class LearnableBias(nn.Module):
    """ReActNet's per-channel shift (RSign's and RPReLU's), as its code writes it."""

    def __init__(self, c):
        super().__init__()
        self.bias = nn.Parameter(torch.randn(1, c, 1, 1) * 0.3)

    def forward(self, x):
        return x + self.bias.expand_as(x)


class RPReLU(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.before, self.prelu, self.after = LearnableBias(c), nn.PReLU(c), LearnableBias(c)
        with torch.no_grad():
            self.prelu.weight.uniform_(-0.5, 0.5)

    def forward(self, x):
        return self.after(self.prelu(self.before(x)))


class ReActBlock(nn.Module):
    """ReActNet's block: RSign, 3x3 binary conv, BN, residual (an average
    pool when strided), RPReLU; then RSign, 1x1 binary conv(s) (two,
    concatenated, where the width doubles), BN, residual, RPReLU."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.move0, self.act0 = LearnableBias(cin), ApproxSign()
        self.conv3, self.bn1 = HardBinaryConv(cin, cin, stride), nn.BatchNorm2d(cin)
        self.pool = nn.AvgPool2d(2, 2) if stride == 2 else None
        self.prelu1, self.move1, self.act1 = RPReLU(cin), LearnableBias(cin), ApproxSign()
        self.halves = nn.ModuleList(HardBinaryConv(cin, cin, k=1) for _ in range(cout // cin))
        self.bn2 = nn.ModuleList(nn.BatchNorm2d(cin) for _ in range(cout // cin))
        self.prelu2 = RPReLU(cout)

    def forward(self, x):
        out1 = self.bn1(self.conv3(self.act0(self.move0(x))))
        out1 = self.prelu1((x if self.pool is None else self.pool(x)) + out1)
        bits = self.act1(self.move1(out1))
        out2 = torch.cat([bn(conv(bits)) + out1 for conv, bn in zip(self.halves, self.bn2)], dim=1)
        return self.prelu2(out2)


class ReActNet(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 20, 3, 1, 1, bias=False), nn.BatchNorm2d(20))
        self.blocks = nn.Sequential(ReActBlock(20, 20, 1), ReActBlock(20, 40, 2), ReActBlock(40, 40, 1))
        self.fc = nn.Linear(40, classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def xnor(w):
    """XNOR-Net's binary weight: mean |W| per output channel times sign(W)."""
    return w.abs().mean(dim=tuple(range(1, w.dim())), keepdim=True) * torch.sign(w)


class Spellings(nn.Module):
    """The other spellings of research code (onnx.md §1): ``where(x >= 0, 1,
    -1)`` and ``x + (sign(x) - x).detach()`` as binarizers, XNOR weights; a
    binary conv whose BN output only a sign reads (a bit output with
    thresholds), bit max pooling, an unpadded binary conv, and a binary
    dense layer on flattened bits (C, H, W order in the file)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.w1, self.bn1 = nn.Parameter(torch.randn(24, 16, 3, 3)), nn.BatchNorm2d(24)
        self.w2, self.bn2 = nn.Parameter(torch.randn(24, 24, 3, 3)), nn.BatchNorm2d(24)
        self.fc = nn.Parameter(torch.randn(10, 24 * 6 * 6))
        self.fc_bias = nn.Parameter(torch.randn(10))
        self.presign = []

    def forward(self, x):
        x = self.stem(x)
        y1 = self.bn1(F.conv2d(torch.where(x >= 0, 1.0, -1.0), xnor(self.w1), padding=1))
        bits = y1 + (torch.sign(y1) - y1).detach()
        y2 = self.bn2(F.conv2d(F.max_pool2d(bits, 2), xnor(self.w2)))
        self.presign = [x, y1, y2]
        return F.linear(torch.flatten(torch.sign(y2), 1), xnor(self.fc), self.fc_bias)


class BinaryMLP(nn.Module):
    """A TFC-style dense BNN on a flattened image: BatchNorm1d of the C, H, W
    elements, sign, binary dense layers with BN between them, a scalar affine
    tail (TensorNorm)."""

    def __init__(self):
        super().__init__()
        self.bn0 = nn.BatchNorm1d(3 * 6 * 6)
        self.w1, self.bn1 = nn.Parameter(torch.randn(40, 3 * 6 * 6)), nn.BatchNorm1d(40)
        self.w2 = nn.Parameter(torch.randn(10, 40))
        self.presign = []

    def forward(self, x):
        y0 = self.bn0(x.reshape(x.shape[0], -1) * 2 - 1)
        y1 = self.bn1(F.linear(ApproxSign()(y0), xnor(self.w1)))
        self.presign = [y0, y1]
        return (F.linear(ApproxSign()(y1), xnor(self.w2)) - 0.5) * 0.25


def calibrated(net, seed, shape=(3, 16, 16), batches=4, batch=16):
    """``net`` in eval mode with BatchNorm statistics of random inputs and
    random affine parameters, a third of the gammas negative."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None          # the plain average over the calibration batches
    net.train()
    with torch.no_grad():
        for _ in range(batches):
            net(torch.randn(batch, *shape, generator=g))
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                gamma = torch.rand(m.num_features, generator=g) + 0.5
                gamma[torch.rand(m.num_features, generator=g) < 1 / 3] *= -1
                m.weight.copy_(gamma)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return net.eval()


def inputs_with_margin(net, n, seed, shape=(3, 16, 16), binarizer=ApproxSign, draw=torch.randn):
    """``n`` random inputs whose every pre-sign value (the input of a
    ``binarizer`` module, and what the net records in ``presign``) is at least
    MARGIN from 0."""
    g = torch.Generator().manual_seed(seed)
    smallest = []
    hooks = [m.register_forward_hook(lambda mod, args, out: smallest.append(args[0]))
             for m in net.modules() if isinstance(m, binarizer)]
    kept = []
    with torch.no_grad():
        while sum(len(k) for k in kept) < n:
            x = draw(32, *shape, generator=g)
            smallest.clear()
            net(x)
            presign = smallest + list(getattr(net, "presign", []))
            ok = torch.stack([t.abs().flatten(1).amin(1) for t in presign]).amin(0) > MARGIN
            kept.append(x[ok])
    for h in hooks:
        h.remove()
    return torch.cat(kept)[:n]


def export(net, dynamo, target=None):
    target = io.BytesIO() if target is None else target
    example = torch.randn(1, 3, 16, 16)
    if dynamo:
        torch.onnx.export(net, (example,), target, dynamo=True, opset_version=18, verbose=False)
    else:
        torch.onnx.export(net, (example,), target, dynamo=False, opset_version=17)
    return target.getvalue() if isinstance(target, io.BytesIO) else target


def assert_matches_torch(model, net, x):
    with torch.no_grad():
        expected = net(x).numpy()
    got = model.run(np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1))).reshape(expected.shape)
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= 1e-4 * scale, np.abs(got - expected).max() / scale
    np.testing.assert_array_equal(got.argmax(1), expected.argmax(1))


def binary_layers(model):
    return [r for r in model.layers() if r["op"].startswith("bconv2d")]


@pytest.fixture(scope="module")
def bireal():
    torch.manual_seed(0)
    net = calibrated(BiReal(), seed=1)
    return net, inputs_with_margin(net, 8, seed=2)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_bireal_matches_pytorch(bireal, dynamo, tmp_path):
    net, x = bireal
    source = export(net, dynamo, str(tmp_path / "bireal.onnx") if dynamo else None)
    model = from_onnx(source, threads=1)
    assert_matches_torch(model, net, x)
    rows = binary_layers(model)
    assert len(rows) == 4 and all(r["precision"] == "binary" for r in rows)
    # every binary conv of the net is padded: same-zero, as PyTorch pads the +-1 tensor
    convs = [n for n in model.plan.graph.nodes if n.op == "bconv2d_float"]
    assert all(n.attrs["pad_value"] == 0 for n in convs)
    # each block's BN and residual add are the conv's epilogue and skip
    assert all(len(n.inputs) == 2 for n in convs)
    assert not any(n.op == "add_float" and len(n.inputs) == 2 for n in model.plan.graph.nodes)


def test_exact_zeros_reaching_a_sign_are_counted(bireal):
    """Sign(0) is 0 in PyTorch and +1 in bnnrt (docs/onnx.md): count how often
    an exact 0 reaches a sign of the Bi-Real-style net on random inputs, and
    check that bnnrt's outputs equal PyTorch's wherever none does and the
    pre-sign values keep the margin, so that the zeros are the only deviation."""
    net, _ = bireal
    model = from_onnx(export(net, False), threads=1)
    seen = []
    hooks = [m.register_forward_hook(lambda mod, args, out: seen.append(args[0]))
             for m in net.modules() if isinstance(m, ApproxSign)]
    g = torch.Generator().manual_seed(30)
    x = torch.randn(256, 3, 16, 16, generator=g)
    with torch.no_grad():
        expected = net(x).numpy()
    for h in hooks:
        h.remove()
    zeros = torch.stack([(t == 0).flatten(1).sum(1) for t in seen]).sum(0)        # per image
    margin = torch.stack([t.abs().flatten(1).amin(1) for t in seen]).amin(0)
    print(f"\nexact zeros reaching a sign: {int(zeros.sum())} values in {int((zeros > 0).sum())} of "
          f"{len(x)} images; {int((margin > MARGIN).sum())} images keep the margin")
    got = model.run(np.ascontiguousarray(x.numpy().transpose(0, 2, 3, 1))).reshape(expected.shape)
    clean = (margin > MARGIN).numpy()
    assert clean.any()
    scale = np.abs(expected).max()
    assert np.abs(got[clean] - expected[clean]).max() <= 1e-4 * scale
    assert (zeros > 0).sum() <= len(x) // 2      # exact zeros are the exception, not the rule


def test_from_torch_exports_any_module_through_onnx(bireal):
    """bnnrt.convert.from_torch on a module that is not bnnrt's own: exported in
    memory (eval mode, then the module's mode is given back) and imported."""
    from bnnrt.convert import from_torch
    net, x = bireal
    net.train()
    model = from_torch(net, x[:1], threads=1)
    assert net.training
    assert_matches_torch(model, net.eval(), x)
    assert len(binary_layers(model)) == 4
    by_shape = from_torch(net, (1,) + tuple(x.shape[1:]), threads=1)
    np.testing.assert_array_equal(by_shape.run(x.numpy().transpose(0, 2, 3, 1).copy()),
                                  model.run(x.numpy().transpose(0, 2, 3, 1).copy()))
    with pytest.raises(GraphError, match="needs an example input"):
        from_torch(net)
    with pytest.raises(GraphError, match=r"not \(1, C, H, W\)"):
        from_torch(net, (3, 16, 16))


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_reactnet_matches_pytorch(dynamo):
    torch.manual_seed(6)
    net = calibrated(ReActNet(), seed=7)
    x = inputs_with_margin(net, 8, seed=8)
    model = from_onnx(export(net, dynamo), threads=1)
    assert_matches_torch(model, net, x)
    rows = binary_layers(model)
    assert len(rows) == 3 + 4 and all(r["precision"] == "binary" for r in rows)
    assert any(r["op"] == "prelu" for r in model.layers())


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_other_spellings_match_pytorch(dynamo):
    torch.manual_seed(9)
    net = calibrated(Spellings(), seed=10)
    x = inputs_with_margin(net, 8, seed=11)
    model = from_onnx(export(net, dynamo), threads=1)
    assert_matches_torch(model, net, x)
    ops = {n.name: n for n in model.plan.graph.nodes}
    binary = binary_layers(model)
    # both convs' BN outputs are only signed: bit outputs; the dense layer's is float
    assert [r["op"] for r in binary] == ["bconv2d", "bconv2d", "bconv2d_float"]
    assert all(r["precision"] == "binary" for r in binary)
    first, second = (ops[r["name"]] for r in binary[:2])
    assert first.attrs["output"] == second.attrs["output"] == "bits" and first.attrs["pad_value"] == 0
    assert second.attrs["pad_value"] == 1                # no padded taps: the fast path
    assert any(n.op == "maxpool" for n in ops.values())   # on bits


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
def test_binary_mlp_matches_pytorch(dynamo):
    """Flattened C, H, W elements through BN, sign and binary dense layers:
    the per-element constants and the dense columns follow bnnrt's order."""
    torch.manual_seed(12)
    net = calibrated(BinaryMLP(), seed=13, shape=(3, 6, 6))
    x = inputs_with_margin(net, 8, seed=14, shape=(3, 6, 6))
    example = torch.randn(1, 3, 6, 6)
    target = io.BytesIO()
    torch.onnx.export(net, (example,), target, dynamo=dynamo, opset_version=18 if dynamo else 17)
    model = from_onnx(target.getvalue(), threads=1)
    assert_matches_torch(model, net, x)
    binary = binary_layers(model)
    assert [r["op"] for r in binary] == ["bconv2d", "bconv2d_float"]
    assert all(r["precision"] == "binary" for r in binary)


def test_sign_of_zero_is_plus_one():
    """ONNX's Sign(0) is 0; a bit cannot hold 0, bnnrt's sign_bits gives +1
    (docs/onnx.md)."""
    nodes = [helper.make_node("Sign", ["x"], ["s"]), helper.make_node("Conv", ["s", "w"], ["y"])]
    proto = _tiny_model(nodes, [("w", np.ones((1, 4, 1, 1)))], in_shape=(1, 4, 1, 2))
    x = np.array([[[[0.0, -0.0, 2.0, -1.0], [0.5, -3.0, -2.0, -1.0]]]], np.float32)
    from onnx.reference import ReferenceEvaluator
    assert ReferenceEvaluator(proto).run(None, {"x": x.transpose(0, 3, 1, 2)})[0].reshape(-1).tolist() == [0, -2]
    assert from_onnx(proto).run(x).reshape(-1).tolist() == [2, -2]


def test_exporter_options(bireal):
    """A dynamic batch axis, and TorchScript without constant folding (BN kept
    after the float convs, Identity nodes)."""
    net, x = bireal
    for options in ({"input_names": ["x"], "dynamic_axes": {"x": {0: "batch"}}},
                    {"do_constant_folding": False, "opset_version": 13}):
        target = io.BytesIO()
        torch.onnx.export(net, (torch.randn(1, 3, 16, 16),), target, dynamo=False, **options)
        model = from_onnx(target.getvalue())
        assert_matches_torch(model, net, x)
        assert len(binary_layers(model)) == 4


def test_model_proto_and_cli(bireal, tmp_path):
    net, x = bireal
    data = export(net, dynamo=False)
    assert_matches_torch(from_onnx(onnx.load_from_string(data)), net, x[:2])
    path = tmp_path / "net.onnx"
    path.write_bytes(data)
    assert importer_for(path) is not None
    proc = subprocess.run([sys.executable, "-m", "bnnrt", "convert", str(path), str(tmp_path / "net.bnn")],
                          capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert proc.returncode == 0, proc.stderr
    import bnnrt
    loaded = bnnrt.load(tmp_path / "net.bnn")
    assert_matches_torch(loaded, net, x[:2])


def test_zero_latent_weight_is_refused():
    torch.manual_seed(3)
    net = calibrated(BiReal(widths=(8, 8), classes=3), seed=4)
    with torch.no_grad():
        net.blocks[1].conv.weight[5] = 0.0
    with pytest.raises(GraphError, match="zero weight"):
        from_onnx(export(net, dynamo=False))


def _tiny_model(nodes, initializers=(), in_shape=(1, 4, 5, 5), out_shape=None, opset=17):
    graph = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(in_shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        [onnx.numpy_helper.from_array(np.asarray(a, np.float32), name) for name, a in initializers])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_a_conv_of_bits_with_float_weights_runs_in_float_with_a_warning():
    from onnx.reference import ReferenceEvaluator
    rng = np.random.default_rng(7)
    nodes = [helper.make_node("Sign", ["x"], ["s"]), helper.make_node("Conv", ["s", "w"], ["y"], pads=[1, 1, 1, 1])]
    proto = _tiny_model(nodes, [("w", rng.standard_normal((3, 4, 3, 3)))])
    with pytest.warns(UserWarning, match="not binary.*runs as a float conv"):
        model = from_onnx(proto)
    assert not binary_layers(model)
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    expected = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    got = model.run(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_unsupported_ops_are_listed_with_counts():
    nodes = [helper.make_node("Sin", ["x"], ["a"]), helper.make_node("Erf", ["a"], ["b"]),
             helper.make_node("Sin", ["b"], ["y"])]
    with pytest.raises(UnsupportedOpError, match=r"2 op\(s\).*Erf x1, Sin x2"):
        from_onnx(_tiny_model(nodes).SerializeToString())


def test_bipolar_multithreshold_is_a_sign_at_its_threshold():
    """QONNX's MultiThreshold as FINN writes a binarizer: +1 iff x >= t per
    channel (ties included), feeding a binary conv."""
    rng = np.random.default_rng(11)
    c = 5
    t = rng.standard_normal((c, 1)).astype(np.float32)
    w = np.where(rng.random((3, c, 3, 3)) < 0.5, -1.0, 1.0).astype(np.float32)

    def model(**attrs):
        nodes = [helper.make_node("MultiThreshold", ["x", "t"], ["b"], domain="qonnx.custom_op.general", **attrs),
                 helper.make_node("Conv", ["b", "w"], ["y"], pads=[1, 1, 1, 1])]
        m = _tiny_model(nodes, [("t", t), ("w", w)], in_shape=(1, c, 6, 6))
        m.opset_import.append(helper.make_opsetid("qonnx.custom_op.general", 1))
        return m.SerializeToString()
    bnn = from_onnx(model(out_scale=2.0, out_bias=-1.0, data_layout="NCHW"), threads=1)
    assert [r["precision"] for r in bnn.layers()] == ["float", "binary"]
    x = rng.standard_normal((2, c, 6, 6)).astype(np.float32)
    x[0, :, 0, 0] = t[:, 0]                                     # at the threshold: +1
    signs = np.where(x >= t.reshape(1, c, 1, 1), 1.0, -1.0).astype(np.float32)
    want = F.conv2d(torch.from_numpy(signs), torch.from_numpy(w), padding=1).numpy()
    got = bnn.run(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(got, want)
    with pytest.raises(GraphError, match="bipolar form"):
        from_onnx(model(out_scale=1.0, out_bias=0.0))        # {0, 1} outputs: not a sign


def test_malformed_nodes_are_refused_by_name():
    """Nodes short of inputs (checked against ONNX's own schema of the op),
    operands of the wrong kind: refused with the node named, never a Python
    exception wrapped in the message."""
    w = np.ones((4, 4, 3, 3), np.float32)
    cases = [
        ([helper.make_node("Add", ["x"], ["y"], name="lonely")], [], r"node 0 \(Add 'lonely'\): has 1 inputs.*takes 2"),
        ([helper.make_node("Conv", [], ["y"])], [], r"Conv\): has 0 inputs.*takes 2 to 3"),
        ([helper.make_node("Where", ["x", "x"], ["y"])], [], r"Where\): has 2 inputs"),
        ([helper.make_node("Relu", ["x"], [])], [], r"has 0 outputs"),
        ([helper.make_node("ReduceMean", ["w", "axes"], ["m"]), helper.make_node("Mul", ["x", "m"], ["y"])],
         [("w", w), ("axes", np.ones((2, 2)))], r"axes must be a list of integers"),      # opset 18: an input
        ([helper.make_node("Gemm", ["f", "b", "c"], ["y"], transB=1), ],
         [("b", np.ones((3, 100))), ("c", np.ones(4))], r"bias C of shape \[4\] does not fit the 3 outputs"),
    ]
    for nodes, inits, message in cases:
        if nodes[0].op_type == "Gemm":
            nodes = [helper.make_node("Flatten", ["x"], ["f"])] + nodes
        with pytest.raises(BnnrtError, match=message) as e:
            from_onnx(_tiny_model(nodes, inits, opset=18).SerializeToString())
        assert not re.search(r"\b(IndexError|TypeError|KeyError|ValueError)\b", str(e.value)), e.value


def test_asymmetric_pads_and_layout_match_the_onnx_reference():
    """ONNX orders pads [top, left, bottom, right] and weights OIHW; the
    flatten before the dense layer is C, H, W. Checked against onnx's own
    reference evaluator."""
    from onnx.reference import ReferenceEvaluator
    rng = np.random.default_rng(5)
    w = rng.standard_normal((6, 4, 3, 2))
    dense = rng.standard_normal((7, 6 * 3 * 5))      # the conv output: 6 x 3 x 5
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[0, 1, 2, 0], strides=[2, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"]),
             helper.make_node("Gemm", ["f", "d"], ["y"], transB=1)]
    proto = _tiny_model(nodes, [("w", w), ("d", dense)], out_shape=[1, 7])
    x = rng.standard_normal((1, 4, 5, 5)).astype(np.float32)
    expected = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    got = from_onnx(proto).run(np.ascontiguousarray(x.transpose(0, 2, 3, 1))).reshape(1, 7)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


@pytest.mark.parametrize("auto_pad", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_auto_pad_matches_the_onnx_reference(auto_pad):
    from onnx.reference import ReferenceEvaluator
    rng = np.random.default_rng(6)
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], auto_pad=auto_pad, strides=[2, 2]),
             helper.make_node("MaxPool", ["c"], ["y"], kernel_shape=[2, 2], auto_pad=auto_pad)]
    proto = _tiny_model(nodes, [("w", rng.standard_normal((3, 4, 3, 2)))], in_shape=(1, 4, 6, 5))
    x = rng.standard_normal((1, 4, 6, 5)).astype(np.float32)
    expected = ReferenceEvaluator(proto).run(None, {"x": x})[0]
    got = from_onnx(proto).run(np.ascontiguousarray(x.transpose(0, 2, 3, 1)))
    np.testing.assert_allclose(got.transpose(0, 3, 1, 2), expected, rtol=1e-5, atol=1e-5)


def test_corrupt_and_truncated_files_raise_bnnrt_errors(bireal):
    data = export(bireal[0], dynamo=False)
    for bad in (data[: len(data) // 2], data[:1000], b"\x08\x07garbage" * 40, b""):
        with pytest.raises(BnnrtError):
            from_onnx(bad)


@pytest.mark.parametrize("dynamo", [False, True], ids=["torchscript", "dynamo"])
@pytest.mark.parametrize("name,shape", [("tfc_1w1a", (1, 28, 28)), ("lfc_1w1a", (1, 28, 28)),
                                        ("cnv_1w1a", (3, 32, 32))])
def test_brevitas_bnn_pynq_matches_brevitas(name, shape, dynamo, tmp_path):
    """Brevitas' bnn_pynq W1A1 networks (random weights, BN calibrated) through
    ``export_qonnx``: BipolarQuant weights and activations, bit outputs with
    thresholds (BN -> BipolarQuant), bit max pooling, CNV's 8-bit input layer
    on conv2d_int8, the TensorNorm tail."""
    pytest.importorskip("onnxoptimizer")
    pytest.importorskip("brevitas")
    from brevitas.export import export_qonnx
    from brevitas.nn import QuantIdentity
    from brevitas_examples.bnn_pynq.models import model_with_cfg
    torch.manual_seed(18)
    net = calibrated(model_with_cfg(name, pretrained=False)[0], seed=19, shape=shape)
    x = inputs_with_margin(net, 8, seed=20, shape=shape, binarizer=QuantIdentity, draw=torch.rand)
    path = tmp_path / f"{name}.onnx"
    export_qonnx(net, torch.rand(1, *shape), str(path), dynamo=dynamo)
    model = from_onnx(path, threads=1)
    assert_matches_torch(model, net, x)
    binary = binary_layers(model)
    assert len(binary) == {"tfc_1w1a": 4, "lfc_1w1a": 4, "cnv_1w1a": 8}[name]      # CNV: the first conv is int8
    assert all(r["precision"] == "binary" for r in binary)
    assert [r["op"] for r in binary][:-1] == ["bconv2d"] * (len(binary) - 1)      # bit outputs
    if name == "cnv_1w1a":
        assert [r["precision"] for r in model.layers() if r["op"] == "conv2d_int8"] == ["int8"]
        # its BN -> BipolarQuant are integer thresholds: the 8-bit layer writes bits
        first = next(n for n in model.plan.graph.nodes if n.op == "conv2d_int8")
        assert first.attrs["output"] == "bits"
        assert not any(n.op in ("dequantize", "sign_bits") for n in model.plan.graph.nodes)
