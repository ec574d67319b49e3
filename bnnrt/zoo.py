"""Models with random weights, for benchmarks, tests and trying bnnrt out.

The weights are random but scaled like a trained network's (accumulators map
to a spread of int8 values, thresholds sit inside the range of the dot
products), so every layer does real work and outputs vary with the input.
"""

from __future__ import annotations

import numpy as np

from . import blendnet
from . import mixer as mixer_wiring
from ._shapes import packed_bytes
from .graph import GraphBuilder
from .model import Model
from .quant import quantize_multiplier, quantize_multipliers

#: Typical standard deviation of int8 activations in the random models.
ACT_STD = 24.0


def _binary_weights(rng, cout, k, cin):
    signs = rng.random((cout, k, k, cin)) < 0.5
    return np.packbits(signs, axis=-1, bitorder="little").reshape(cout, k, k, packed_bytes(cin))


def _int8_weights(rng, cout, k, cin):
    return rng.integers(-127, 128, size=(cout, k, k, cin), dtype=np.int8)


def _requant(real, cout, rng, spread=0.25):
    """Per-channel multipliers around ``real`` (as a trained BN would give)."""
    return quantize_multipliers(real * (1 + spread * rng.standard_normal(cout)))


def blendnet20_params(width=1, input_shape=(32, 32, 3), num_classes=10, seed=0) -> dict:
    """Random parameters for every layer :func:`bnnrt.blendnet.build` names."""
    rng = np.random.default_rng(seed)
    cin0 = input_shape[2]
    c0 = 16 * width
    w_std = 73.0                                  # std of uniform int8 weights
    params = {"input": {"scale": 1.0 / 32.0}}     # inputs ~ N(0, 1) -> int8 std 32
    m, s = _requant(ACT_STD / (np.sqrt(9 * cin0) * w_std * 32.0), c0, rng)
    params["stem"] = {"weights": _int8_weights(rng, c0, 3, cin0), "multiplier": m, "shift": s,
                      "bias": rng.integers(-2000, 2000, c0, dtype=np.int32)}
    for name, cin, cout, stride in blendnet.stages(width):
        k1, k2 = 9 * cin, 9 * cout
        params[f"{name}.binarize"] = {
            "thresholds": rng.integers(-6, 7, cin).astype(np.int16),
            "directions": np.where(rng.random(cin) < 0.9, 1, -1).astype(np.int8)}
        params[f"{name}.conv1"] = {
            "weights": _binary_weights(rng, cout, 3, cin),
            "thresholds": np.round(0.3 * np.sqrt(k1) * rng.standard_normal(cout)).astype(np.int32)}
        m2, s2 = _requant(ACT_STD / np.sqrt(k2), cout, rng)
        sm, ss = quantize_multiplier(0.7)
        params[f"{name}.conv2"] = {
            "weights": _binary_weights(rng, cout, 3, cout), "multiplier": m2, "shift": s2,
            "bias": np.round(0.2 * np.sqrt(k2) * rng.standard_normal(cout)).astype(np.int32),
            "skip_multiplier": sm, "skip_shift": ss}
        if blendnet.needs_skip_conv(cin, cout, stride):
            m3, s3 = _requant(ACT_STD / (np.sqrt(cin) * w_std * ACT_STD), cout, rng)
            params[f"{name}.skip"] = {"weights": _int8_weights(rng, cout, 1, cin),
                                      "multiplier": m3, "shift": s3,
                                      "bias": np.zeros(cout, np.int32)}
    oh, ow = blendnet.output_hw(input_shape)
    pm, ps = quantize_multiplier(1.0 / (oh * ow))
    params["pool"] = {"multiplier": pm, "shift": ps}
    c = 64 * width
    params["head"] = {"weights": _int8_weights(rng, num_classes, 1, c),
                      "bias": rng.integers(-500, 500, num_classes, dtype=np.int32)}
    params["logits"] = {"scale": np.full(num_classes, 2.0 / (np.sqrt(c) * w_std * ACT_STD), np.float32)}
    return params


def blendnet20(width: int = 1, input_shape=(32, 32, 3), num_classes: int = 10, seed: int = 0,
               threads: int | None = None) -> Model:
    """BlendNet-20 with random weights (untrained: its predictions mean nothing).

    ``width=4`` gives the 64/128/256-channel benchmark variant."""
    input_shape = tuple(int(d) for d in input_shape)
    params = blendnet20_params(width, input_shape, num_classes, seed)
    c = input_shape[2]
    metadata = {
        "name": f"blendnet20-w{width}-random",
        "description": "BlendNet-20 with random weights (untrained)",
        "input": {"shape": list(input_shape), "color": "L" if c == 1 else "RGB",
                  "scale": 1.0 / 255.0, "mean": [0.5] * c, "std": [0.25] * c},
        "labels": [f"class_{i}" for i in range(num_classes)],
        "provenance": {"source": "bnnrt.zoo.blendnet20", "seed": seed, "trained": False},
    }
    graph = blendnet.build(params, width=width, input_shape=input_shape,
                           num_classes=num_classes, metadata=metadata)
    return Model(graph, threads=threads, name=f"zoo:blendnet20:{width}")


def resnet20_binary(width: int = 4, input_shape=(32, 32, 3), num_classes: int = 10, seed: int = 0,
                    threads: int | None = None) -> Model:
    """The binary ResNet-20 of the benchmarks (anchors.md), random weights.

    Every 3x3 conv is binary with its own shortcut (Bi-Real style: the other
    arrangement of the Blend block's ops): ``x = clip(bconv(binarize(x)) + skip)``
    with an int8 1x1 projection where the shape changes; int8 stem and head.
    Width 4 (64/128/256 channels) has 642 M binary MACs, as LCE's twin."""
    rng = np.random.default_rng(seed)
    input_shape = tuple(int(d) for d in input_shape)
    b = GraphBuilder()
    x = b.quantize(b.input("image", input_shape), scale=1 / 32, name="input")
    c0, w_std = 16 * width, 73.0

    hw = input_shape[:2]
    m, s = _requant(ACT_STD / (np.sqrt(9 * input_shape[2]) * w_std * 32.0), c0, rng)
    x = b.conv2d_int8(x, _int8_weights(rng, c0, 3, input_shape[2]), pads=blendnet.conv_pads(hw, 3, 1, 1), multiplier=m,
                      shift=s, name="stem")
    cin = c0
    sm, ss = quantize_multiplier(0.7)
    for stage, cout in enumerate([16 * width, 32 * width, 64 * width]):
        for conv in range(6):
            stride = 2 if (stage > 0 and conv == 0) else 1
            name = f"stage{stage + 1}.conv{conv + 1}"
            skip = x
            if stride != 1 or cin != cout:
                m3, s3 = _requant(ACT_STD / (np.sqrt(cin) * w_std * ACT_STD), cout, rng)
                skip = b.conv2d_int8(x, _int8_weights(rng, cout, 1, cin), strides=(stride, stride),
                                     multiplier=m3, shift=s3, name=f"{name}.shortcut")
            bits = b.binarize(x, thresholds=rng.integers(-6, 7, cin).astype(np.int16),
                              directions=np.ones(cin, np.int8), name=f"{name}.binarize")
            m2, s2 = _requant(ACT_STD / np.sqrt(9 * cin), cout, rng)
            x = b.bconv2d(bits, _binary_weights(rng, cout, 3, cin), cin=cin, strides=(stride, stride),
                          pads=blendnet.conv_pads(hw, 3, stride, 1), pad_value=1, output="int8", multiplier=m2, shift=s2,
                          skip=skip, skip_multiplier=sm, skip_shift=ss, name=name)
            hw = ((hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1)
            cin = cout
    pm, ps = quantize_multiplier(1.0 / (hw[0] * hw[1]))
    x = b.global_avgpool(x, multiplier=pm, shift=ps, name="pool")
    x = b.conv2d_int8(x, _int8_weights(rng, num_classes, 1, cin), output="int32", name="head")
    x = b.dequantize(x, scale=np.full(num_classes, 2.0 / (np.sqrt(cin) * w_std * ACT_STD), np.float32),
                     name="logits")
    c = input_shape[2]
    meta = {"name": f"resnet20-binary-w{width}-random", "architecture": f"resnet20_binary(width={width})",
            "description": "binary ResNet-20 (Bi-Real shortcuts) with random weights (untrained)",
            "input": {"shape": list(input_shape), "color": "L" if c == 1 else "RGB",
                      "scale": 1.0 / 255.0, "mean": [0.5] * c, "std": [0.25] * c},
            "labels": [f"class_{i}" for i in range(num_classes)], "output": "logits",
            "provenance": {"source": "bnnrt.zoo.resnet20_binary", "seed": seed, "trained": False}}
    return Model(b.build(x, meta), threads=threads, name=f"zoo:resnet20_binary:{width}")


def mixer_params(cfg: "mixer_wiring.Config", seed: int = 0) -> dict:
    """Random parameters for every layer :func:`bnnrt.mixer.build` names."""
    rng = np.random.default_rng(seed)
    w_std = 73.0
    cin0, p = cfg.input_shape[2], cfg.patch
    params = {"input": {"scale": 1.0 / 32.0}}
    m, s = _requant(ACT_STD / (np.sqrt(p * p * cin0) * w_std * 32.0), cfg.dim, rng)
    params["embed"] = {"weights": _int8_weights(rng, cfg.dim, p, cin0), "multiplier": m, "shift": s,
                       "bias": rng.integers(-2000, 2000, cfg.dim, dtype=np.int32)}
    if cfg.kind == "binary":
        params["embed.binarize"] = {"thresholds": rng.integers(-6, 7, cfg.dim).astype(np.int16),
                                    "directions": np.where(rng.random(cfg.dim) < 0.9, 1, -1).astype(np.int8)}
    layers = mixer_wiring.mlps(cfg)
    for n, (name, _, width, hidden) in enumerate(layers):
        fc1 = {"weights": _binary_weights(rng, hidden, 1, width),
               "thresholds": np.round(0.3 * np.sqrt(width) * rng.standard_normal(hidden)).astype(np.int32)}
        m2, s2 = _requant(ACT_STD / np.sqrt(hidden), width, rng)
        int8_fc2 = {"weights": _binary_weights(rng, width, 1, hidden), "multiplier": m2, "shift": s2,
                    "bias": np.round(0.2 * np.sqrt(hidden) * rng.standard_normal(width)).astype(np.int32)}
        params[f"{name}.fc1"] = fc1
        if cfg.kind == "blend":
            sm, ss = quantize_multiplier(0.7)
            params[f"{name}.binarize"] = {
                "thresholds": rng.integers(-6, 7, width).astype(np.int16),
                "directions": np.where(rng.random(width) < 0.9, 1, -1).astype(np.int8)}
            params[f"{name}.fc2"] = dict(int8_fc2, skip_multiplier=sm, skip_shift=ss)
        elif n == len(layers) - 1:
            params[f"{name}.fc2"] = int8_fc2
        else:
            params[f"{name}.fc2"] = {
                "weights": _binary_weights(rng, width, 1, hidden),
                "thresholds": np.round(0.3 * np.sqrt(hidden) * rng.standard_normal(width)).astype(np.int32)}
    pm, ps = quantize_multiplier(1.0 / cfg.tokens)
    params["pool"] = {"multiplier": pm, "shift": ps}
    params["head"] = {"weights": _int8_weights(rng, cfg.num_classes, 1, cfg.dim),
                      "bias": rng.integers(-500, 500, cfg.num_classes, dtype=np.int32)}
    params["logits"] = {"scale": np.full(cfg.num_classes, 2.0 / (np.sqrt(cfg.dim) * w_std * ACT_STD),
                                         np.float32)}
    return params


def mixer(kind: str = "blend", seed: int = 0, threads: int | None = None, **config) -> Model:
    """BlendMixer (``kind="blend"``) or the naive binary Mixer (``"binary"``)
    with random weights; ``config`` as :class:`bnnrt.mixer.Config` (default:
    the shipped models' shapes, 28x28x1 input)."""
    cfg = mixer_wiring.Config(kind=kind, **config)
    if cfg.kind not in mixer_wiring.KINDS:
        raise ValueError(f"Mixer kind must be one of {mixer_wiring.KINDS}, not {kind!r}")
    c = cfg.input_shape[2]
    metadata = {
        "name": f"{'blendmixer' if kind == 'blend' else 'mixer-binary'}-random",
        "description": f"{cfg.describe()} with random weights (untrained)",
        "input": {"shape": list(cfg.input_shape), "color": "L" if c == 1 else "RGB",
                  "scale": 1.0 / 255.0, "mean": [0.5] * c, "std": [0.25] * c},
        "labels": [f"class_{i}" for i in range(cfg.num_classes)],
        "provenance": {"source": "bnnrt.zoo.mixer", "seed": seed, "trained": False},
    }
    graph = mixer_wiring.build(mixer_params(cfg, seed), cfg, metadata)
    return Model(graph, threads=threads, name=f"zoo:mixer:{kind}")
