"""Model.predict / run / summary as a user meets them, including bad input."""

import io

import numpy as np
import pytest
from PIL import Image

import bnnrt
from bnnrt import zoo
from bnnrt.errors import InputError


@pytest.fixture(scope="module")
def gray():
    return zoo.blendnet20(input_shape=(28, 28, 1), seed=7, threads=1)


def _image(rng, size=(32, 32), mode="RGB"):
    channels = {"RGB": 3, "L": 1}[mode]
    arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr.squeeze() if channels == 1 else arr, mode)


def test_predict_accepts_image_path_array_and_batches(tmp_path, rng, blendnet):
    img = _image(rng)
    path = tmp_path / "x.png"
    img.save(path)
    arr = np.asarray(img)
    p_img = blendnet.predict(img)
    assert p_img.shape == (10,) and p_img.dtype == np.float32
    assert abs(float(p_img.sum()) - 1) < 1e-5
    np.testing.assert_array_equal(blendnet.predict(path), p_img)
    np.testing.assert_array_equal(blendnet.predict(str(path)), p_img)
    np.testing.assert_array_equal(blendnet.predict(arr), p_img)
    batch = blendnet.predict([img, arr, path])
    assert batch.shape == (3, 10)
    np.testing.assert_array_equal(batch[1], p_img)
    stacked = blendnet.predict(np.stack([arr, arr]))
    np.testing.assert_array_equal(stacked[0], p_img)


def test_predict_is_run_plus_preprocessing_and_softmax(rng, blendnet):
    arr = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    x = ((arr / 255.0 - 0.5) / 0.25).astype(np.float32)[None]
    logits = blendnet.run(x).reshape(1, -1)
    e = np.exp(logits - logits.max())
    np.testing.assert_allclose(blendnet.predict(arr), (e / e.sum())[0], rtol=1e-5)


def test_images_are_converted_and_resized(rng, gray):
    img = _image(rng, size=(40, 50), mode="RGB")
    probs = gray.predict(img)
    assert probs.shape == (10,)
    resized = img.convert("L").resize((28, 28), Image.BILINEAR)
    np.testing.assert_array_equal(gray.predict(resized), probs)
    assert gray.predict(np.asarray(resized)).shape == (10,)      # (H, W) for one channel


def test_outputs_depend_on_the_input(rng, blendnet):
    probs = blendnet.predict([_image(rng) for _ in range(6)])
    assert len({int(p.argmax()) for p in probs}) > 1 or np.ptp(probs, axis=0).max() > 1e-3


@pytest.mark.parametrize("bad,match", [
    (np.zeros((32, 32, 1), np.uint8), r"shape \(32, 32, 1\).*3 channels"),
    (np.zeros((32, 32), np.uint8), r"shape \(32, 32\)"),
    (np.zeros((16, 16, 3), np.uint8), r"32x32 images"),
    (np.zeros((2, 32, 32, 4), np.uint8), r"batch has shape \(2, 32, 32, 4\)"),
    (np.zeros((32, 32, 3), np.complex64), "dtype complex64"),
    (np.array([["a"] * 3] * 32 * 32).reshape(32, 32, 3), "dtype <U1"),
    (np.full((32, 32, 3), np.nan, np.float32), "NaN"),
    ("/nonexistent/image.png", "cannot read image '/nonexistent/image.png'"),
    (12, "expected a PIL image, an image path or an array, got int"),
    ([np.zeros((32, 32, 3)), np.zeros((31, 32, 3))], "item 1 of the batch"),
])
def test_bad_predict_inputs_raise_input_error(bad, match, blendnet):
    with pytest.raises(InputError, match=match):
        blendnet.predict(bad)


def test_unreadable_image_file(tmp_path, blendnet):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    with pytest.raises(InputError, match="broken.png"):
        blendnet.predict(path)


@pytest.mark.parametrize("bad,match", [
    (np.zeros((32, 32, 3), np.float32), r"shape \(32, 32, 3\)"),
    (np.zeros((1, 32, 32, 4), np.float32), r"expected \(N, 32, 32, 3\)"),
    (np.zeros((1, 32, 32, 3), np.complex64), "dtype complex64"),
    (np.full((1, 32, 32, 3), np.inf, np.float32), "infinite"),
    ([np.zeros((1, 32, 32, 3), np.float32)] * 2, "takes 1 input"),
    ("image.png", "expected a numpy array"),
])
def test_bad_run_inputs_raise_input_error(bad, match, blendnet):
    with pytest.raises(InputError, match=match):
        blendnet.run(bad)


def test_run_accepts_non_contiguous_and_readonly_arrays(blendnet, rng):
    x = rng.standard_normal((2, 32, 32, 6)).astype(np.float32)[..., ::2]
    ro = np.ascontiguousarray(x)
    ro.setflags(write=False)
    np.testing.assert_array_equal(blendnet.run(x), blendnet.run(ro))
    np.testing.assert_array_equal(blendnet.run(x.astype(np.float64)), blendnet.run(ro))


def test_empty_batch(blendnet):
    assert blendnet.predict([]).shape == (0, 10)


def test_summary_lists_every_layer_with_macs(blendnet):
    out = io.StringIO()
    blendnet.summary(file=out)
    text = out.getvalue()
    for node in blendnet.graph.nodes:
        assert node.name in text
    rows = blendnet.layers()
    assert sum(r["binary_macs"] for r in rows) == 40_108_032   # 9 blocks x 2 3x3 convs, see docs
    assert sum(r["int8_macs"] for r in rows) == 32 * 32 * 16 * 27 + 16 * 16 * 32 * 16 + 8 * 8 * 64 * 32 + 640
    assert "40,108,032" in text


def test_zoo_width_four_has_the_benchmark_channels():
    model = zoo.blendnet20(width=4, threads=1)
    convs = [s.outs[0].shape[-1] for s in model.plan.steps if s.node.op == "bconv2d"]
    assert sorted(set(convs)) == [64, 128, 256]


def test_labels_and_top_k(blendnet, rng):
    top = blendnet.top_k(_image(rng), k=3)
    assert len(top) == 1 and len(top[0]) == 3
    assert all(label.startswith("class_") for label, _ in top[0])
    assert top[0][0][1] >= top[0][1][1] >= top[0][2][1]


def test_public_api_is_small():
    assert set(bnnrt.__all__) >= {"load", "save", "Model", "cpu_info", "zoo"}
    info = bnnrt.cpu_info()
    assert "arch" in info


@pytest.mark.parametrize("meta,match", [
    ([1, 2], "'input' must be a mapping"),
    ({"scale": "big"}, "input scale must be a number"),
    ({"mean": [0.5, 0.5]}, "input mean must be a number or a list of 1"),
    ({"std": {"a": 1}}, "input std must be a number"),
    ({"scale": 10**400}, "beyond the float range"),
    ({"mean": [1e300]}, "not finite in float32"),
    ({"std": [0.0]}, "zero scale or std"),
    ({"color": "CMYK"}, "colour mode 'CMYK'"),
])
def test_malformed_input_metadata_is_refused_at_load(gray, meta, match):
    """metadata.input is checked when the model is loaded, with a ModelFormatError,
    not at the first predict with a TypeError."""
    graph = gray.graph
    g = bnnrt.Graph(graph.inputs, graph.outputs, graph.nodes, dict(graph.metadata, input=meta))
    data = io.BytesIO()
    bnnrt.save(g, data)
    with pytest.raises(bnnrt.ModelFormatError, match=match):
        bnnrt.load(data.getvalue())


def test_16_bit_png_scales_to_8_bits(gray, tmp_path):
    """A 16-bit grayscale PNG keeps its contrast (the high byte), not clipped at 255."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    path = tmp_path / "deep.png"
    Image.fromarray(pixels.astype(np.uint16) * 257).save(path)
    assert Image.open(path).mode.startswith("I;16")
    np.testing.assert_array_equal(gray.predict(path), gray.predict(pixels[:, :, None]))


def test_decompression_bomb_is_an_input_error(gray, tmp_path):
    """A tiny PNG whose header declares 30000 x 30000 pixels is refused."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 30001)) + chunk(b"IEND", b""))
    assert path.stat().st_size < 200
    with pytest.raises(InputError, match="bomb.png"):
        gray.predict(path)


def test_bit_tensor_inputs_and_outputs():
    """run() refuses a bit input with bits set past its channel count (the
    kernels and the oracle would read them differently); predict() does not
    turn a bit output into 'probabilities'."""
    b = bnnrt.GraphBuilder()
    x = b.input("x", (4, 4, 12), "bits")
    w = np.packbits(np.ones((8, 3, 3, 12), bool), axis=-1, bitorder="little")
    w[..., -1] &= 0x0F
    y = b.bconv2d(x, w, cin=12, pads=(1, 1, 1, 1), output="bits", thresholds=np.zeros(8, np.int32))
    model = bnnrt.Model(b.build(y))
    good = np.zeros((1, 4, 4, 2), np.uint8)
    model.run(good)
    bad = good.copy()
    bad[0, 1, 2, 1] = 0x10           # channel 12: beyond the 12 channels
    with pytest.raises(InputError, match="bits set beyond channel 12"):
        model.run(bad)
    b2 = bnnrt.GraphBuilder()
    z = b2.sign_bits(b2.input("img", (8, 8, 3)))
    with pytest.raises(InputError, match="use run"):
        bnnrt.Model(b2.build(z)).predict(np.zeros((8, 8, 3), np.uint8))


def test_large_batches_stream_in_bounded_chunks(gray):
    """A zero-copy broadcast of one image to a large batch is normalised and
    run a chunk at a time: predict() on 12 chunks allocates about what it does
    on one (the whole batch as float32 would be 12 times that)."""
    import tracemalloc
    img = np.random.default_rng(4).integers(0, 256, (28, 28, 1), dtype=np.uint8)
    step = gray.chunk_size
    assert 1 <= step <= 256

    def peak(n):
        gray.predict(np.broadcast_to(img, (n, 28, 28, 1)))       # contexts for every chunk size exist
        tracemalloc.start()
        probs = gray.predict(np.broadcast_to(img, (n, 28, 28, 1)))
        used = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        np.testing.assert_array_equal(probs[-1], probs[0])
        return used
    one, many = peak(step), peak(12 * step)
    assert many < 1.5 * one + (1 << 20), f"12 chunks: {many:,} bytes at the peak, one chunk: {one:,}"


def test_memory_bombs_are_refused_at_load():
    """What a run really allocates (arena, padded copies, numpy temporaries) is
    counted at load: a tiny file asking for gigabytes is refused, naming the layer."""
    b = bnnrt.GraphBuilder()
    x = b.input("x", (1, 1, 1))
    b.add("pad_float", [x], {"pads": [15000, 15000, 15000, 15000], "value": 0.0}, name="pad")
    with pytest.raises(bnnrt.GraphError, match=r"bytes per sample .*layer 'pad' \(pad_float\).*BNNRT_MAX_ARENA_BYTES"):
        bnnrt.Model(b.build("pad"))
    # an int8 TFLite conv whose float64 im2col would take gigabytes
    b = bnnrt.GraphBuilder()
    x = b.add("tfl_quantize", [b.input("x", (1200, 1200, 3))], {"scale": 0.1, "zero_point": 0})
    w = np.ones((4, 11, 11, 3), np.int8)
    b.add("tfl_conv2d", [x], {"in_zero_point": 0, "out_zero_point": 0, "pads": [5, 5, 5, 5]},
          {"weights": w, "bias": np.zeros(4, np.int32), "multiplier": np.full(4, 1 << 30, np.int32),
           "shift": np.zeros(4, np.int8)}, name="conv")
    data = io.BytesIO()
    bnnrt.save(b.build("conv"), data)
    assert len(data.getvalue()) < 20_000
    with pytest.raises(bnnrt.GraphError, match=r"layer 'conv' \(tfl_conv2d\)"):
        bnnrt.load(data.getvalue())
