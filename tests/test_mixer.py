"""BlendMixer and the naive binary Mixer (docs/blendnet.md, "BlendMixer").

The spec: the graph ``bnnrt.mixer.build`` writes runs the same on the kernels
and on the numpy oracle; a Mixer trained with ``bnnrt.train`` and exported
with ``from_torch`` gives in bnnrt, bit for bit, the logits of the PyTorch
network in eval mode (odd widths, batch > 1, BatchNorms with negative gains);
the training command trains and exports both kinds. The ``transpose`` op
itself is checked against the oracle on every variant in test_ops_common.py.
"""

import io

import numpy as np
import pytest

import bnnrt
from bnnrt import format as fmt
from bnnrt import mixer, zoo

SMALL = dict(dim=21, token_hidden=11, channel_hidden=37, depth=2)


@pytest.mark.parametrize("kind", mixer.KINDS)
@pytest.mark.parametrize("shape,patch", [((28, 28, 1), 4), ((15, 21, 3), 3)])
def test_random_mixer_kernels_equal_the_oracle(kind, shape, patch):
    model = zoo.mixer(kind, input_shape=shape, patch=patch, threads=2, **SMALL)
    x = np.random.default_rng(1).standard_normal((3,) + shape).astype(np.float32)
    got = model.run(x)
    want = bnnrt.Model(model.graph, resolver="reference").run(x)
    np.testing.assert_array_equal(got, want)
    assert np.ptp(np.asarray(got).reshape(3, -1), axis=0).max() > 0     # outputs vary: the test can fail
    ops = [n.op for n in model.graph.nodes]
    assert ops.count("transpose") == 2 * SMALL["depth"]


def test_a_mixer_file_is_version_1_1_and_others_stay_1_0():
    buf = io.BytesIO()
    bnnrt.save(zoo.mixer("blend", **SMALL), buf)
    assert fmt.HEADER.unpack_from(buf.getvalue())[1:3] == (1, 1)
    buf = io.BytesIO()
    bnnrt.save(zoo.blendnet20(), buf)
    assert fmt.HEADER.unpack_from(buf.getvalue())[1:3] == (1, 0)


def test_a_bad_kind_is_named():
    with pytest.raises(ValueError, match="kind"):
        zoo.mixer("float")


# ---------------------------------------------------------------------------
# training modules and export (needs torch)


def _torch():
    return pytest.importorskip("torch")


def _randomize_bn(model, seed):
    torch = _torch()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, m in model.named_modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.2)
                m.weight[torch.rand(c, generator=gen) < 0.2] *= -1
                scale = 4.0 if name.endswith(("bn1", "bn2")) else 0.5
                m.bias.copy_(torch.randn(c, generator=gen) * 0.5)
                m.running_mean.copy_(torch.randn(c, generator=gen) * scale)
                m.running_var.copy_(torch.rand(c, generator=gen) * scale ** 2 + 0.1)
        model.head.bias.copy_(torch.randn(model.num_classes, generator=gen))


@pytest.mark.parametrize("kind", mixer.KINDS)
@pytest.mark.parametrize("shape,patch,batch", [((28, 28, 1), 4, 5), ((12, 18, 2), 3, 2)])
def test_exported_mixer_equals_torch_eval_bit_for_bit(kind, shape, patch, batch):
    torch = _torch()
    from bnnrt.convert import from_torch
    from bnnrt.train.mixer import Mixer
    torch.manual_seed(batch)
    net = Mixer(mixer.Config(kind=kind, input_shape=shape, patch=patch, num_classes=7, **SMALL))
    x = torch.randn(batch, shape[2], *shape[:2])
    net.train()
    net(x).sum().backward()                 # the training path runs and has gradients
    assert all(p.grad is not None for p in net.parameters())
    _randomize_bn(net, batch)
    net.eval()
    with torch.no_grad():
        want = net(x).numpy()
    exported = from_torch(net, shape)
    buf = io.BytesIO()
    bnnrt.save(exported, buf)
    for m in (exported, bnnrt.load(buf.getvalue()), bnnrt.load(buf.getvalue(), resolver="reference")):
        got = np.asarray(m.run(x.permute(0, 2, 3, 1).contiguous().numpy())).reshape(batch, -1)
        np.testing.assert_array_equal(got, want)
    assert np.ptp(want, axis=0).max() > 0


def test_training_simulates_the_integer_network():
    """With BatchNorm frozen (eval statistics used in training mode), the
    straight-through forward pass computes what the folded integer network
    computes, up to the int8 rounding of each BN (one step at most, rarely)."""
    torch = _torch()
    from bnnrt.train.mixer import Mixer
    torch.manual_seed(0)
    net = Mixer(mixer.Config(kind="blend", **SMALL))
    _randomize_bn(net, 0)
    x = torch.randn(16, 1, 28, 28)
    net.eval()
    with torch.no_grad():
        exact = net(x)
    net.train()
    for m in net.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.eval()
    with torch.no_grad():
        simulated = net(x)
    assert (exact.argmax(1) == simulated.argmax(1)).float().mean() >= 0.8
    assert torch.corrcoef(torch.stack([exact.flatten(), simulated.flatten()]))[0, 1] > 0.95


def test_lean_training_is_refused_for_a_mixer():
    _torch()
    from bnnrt.train.mixer import Mixer
    with pytest.raises(ValueError, match="lean"):
        Mixer(mixer.Config(**SMALL)).set_lean(True)
