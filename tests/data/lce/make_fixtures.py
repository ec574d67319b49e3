"""Write the LCE test fixtures: small Larq models converted by Larq Compute
Engine, with LCE's own outputs, so the importer's tests need no TensorFlow.

Run once, inside LCE's virtualenv (../shared/design/anchors.md: TensorFlow
2.16, larq, larq-compute-engine 0.16, numpy < 2):

    /tmp/lce/bin/python tests/data/lce/make_fixtures.py

For each model NAME it writes NAME.tflite and NAME.npz with ``inputs``
(float32, N samples), ``lce`` (LCE's reference-kernel outputs, one sample at a
time: LCE runs batch 1) and ``keras`` (the Keras model's outputs). Models are
small on purpose (the repository keeps them); together they cover every op
the importer reads, both pad values, stacked binary convs with bitpacked
outputs, odd channel counts, strides and dilations.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLES = 4


def _binary(**extra):
    kw = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign",
              kernel_constraint="weight_clip", use_bias=False)
    kw.update(extra)
    return kw


def bconv_stack():
    """Float stem, stacked binary convs writing bits straight into the next
    (thresholds), stride 2, both pad values, a fused ReLU, 1x1, binary max
    pool, a float-output binary conv, global mean, dense, softmax."""
    import larq as lq
    import tf_keras as keras
    x_in = keras.Input((9, 11, 5))
    x = keras.layers.Conv2D(13, 3, padding="same")(x_in)
    x = keras.layers.BatchNormalization()(x)
    y = lq.layers.QuantConv2D(21, 3, padding="same", pad_values=1.0, **_binary())(x)
    y = keras.layers.BatchNormalization()(y)
    z = lq.layers.QuantConv2D(19, 3, strides=2, padding="same", pad_values=1.0, **_binary())(y)
    z = keras.layers.BatchNormalization()(z)
    z2 = lq.layers.QuantConv2D(19, 3, padding="same", pad_values=0.0, **_binary())(z)
    z2 = keras.layers.BatchNormalization()(z2)
    z = keras.layers.add([z, z2])
    z = lq.layers.QuantConv2D(17, 3, padding="valid", **_binary())(z)
    z = keras.layers.Activation("relu")(z)
    z = lq.layers.QuantConv2D(16, 1, padding="valid", **_binary())(z)
    z = lq.layers.QuantConv2D(16, 3, padding="same", pad_values=1.0, **_binary())(z)
    z = keras.layers.MaxPool2D(2, padding="same")(z)
    z = lq.layers.QuantConv2D(16, 3, padding="same", pad_values=1.0, **_binary())(z)
    z = keras.layers.GlobalAveragePooling2D()(z)
    z = keras.layers.Dense(10)(z)
    z = keras.layers.Activation("softmax")(z)
    return keras.Model(x_in, z)


def wide_dilated():
    """More than 32 input channels (several words per tap), dilation, stride
    2 with odd sizes, zero padding with a float output, a fused ReLU on a float
    output, and odd spatial sizes throughout."""
    import larq as lq
    import tf_keras as keras
    x_in = keras.Input((15, 13, 3))
    x = keras.layers.Conv2D(40, 3, strides=2, padding="same", use_bias=False)(x_in)
    x = keras.layers.BatchNormalization()(x)
    y = lq.layers.QuantConv2D(70, 3, dilation_rate=2, padding="same", pad_values=1.0, **_binary())(x)
    y = keras.layers.BatchNormalization()(y)
    y = lq.layers.QuantConv2D(33, 3, strides=2, padding="same", pad_values=0.0, **_binary())(y)
    y = keras.layers.Activation("relu")(y)
    y = lq.layers.QuantConv2D(33, (3, 1), padding="same", pad_values=1.0, **_binary())(y)
    y = keras.layers.Activation("relu")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(7, activation="softmax")(y)
    return keras.Model(x_in, y)


def float_ops():
    """The builtin float ops Larq zoo models use around the binary core:
    depthwise conv, explicit padding, max/average pooling, concatenation,
    ReLU6, a standalone BatchNorm (MUL + ADD), flatten (RESHAPE), tanh,
    sigmoid, and a sign used by a float layer (LceQuantize + LceDequantize)."""
    import larq as lq
    import tf_keras as keras
    x_in = keras.Input((12, 10, 4))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x_in)
    x = keras.layers.ReLU(max_value=6.0)(x)
    x = keras.layers.ZeroPadding2D(((1, 0), (2, 1)))(x)
    a = keras.layers.MaxPool2D(3, strides=2, padding="same")(x)
    b = keras.layers.AveragePooling2D(3, strides=2, padding="same")(x)
    x = keras.layers.concatenate([a, b])
    s = lq.quantizers.SteSign()(x)
    x = keras.layers.Conv2D(9, 1)(s)
    x = keras.layers.BatchNormalization()(keras.layers.add([x, keras.layers.Conv2D(9, 1)(a)]))
    x = keras.layers.Activation("tanh")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(6, activation="sigmoid")(x)
    return keras.Model(x_in, x)


def grouped():
    """Grouped binary convolutions (LCE: whole 32-channel words per group),
    with bitpacked and float outputs."""
    import larq as lq
    import tf_keras as keras
    x_in = keras.Input((10, 9, 3))
    x = keras.layers.Conv2D(64, 3, padding="same")(x_in)
    x = keras.layers.BatchNormalization()(x)
    y = lq.layers.QuantConv2D(64, 3, padding="same", pad_values=1.0, groups=2, **_binary())(x)
    y = keras.layers.BatchNormalization()(y)
    y = lq.layers.QuantConv2D(96, 3, strides=2, padding="same", pad_values=1.0, groups=2, **_binary())(y)
    y = keras.layers.BatchNormalization()(y)
    y = lq.layers.QuantConv2D(48, 1, groups=3, **_binary())(y)
    y = keras.layers.BatchNormalization()(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    return keras.Model(x_in, keras.layers.Dense(5)(y))


def resnet20_binary_w1():
    """The binary ResNet-20 of anchors.md at width 1 (16/32/64 channels)."""
    import sys
    sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "benchmarks", "sidebyside"))
    from lce_bench import binary_resnet20
    return binary_resnet20(width=1)


def int8_model():
    """A binary block in an int8 model: int8 stem conv, DEQUANTIZE, LceQuantize,
    a float-output LceBconv2d, a float ADD, QUANTIZE, int8 MEAN and dense."""
    import larq as lq
    import tf_keras as keras
    x_in = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(8, 3, padding="same")(x_in)
    x = keras.layers.BatchNormalization()(x)
    y = lq.layers.QuantConv2D(8, 3, padding="same", pad_values=1.0, **_binary())(x)
    y = keras.layers.BatchNormalization()(y)
    x = keras.layers.add([x, y])
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(x_in, keras.layers.Dense(4)(x))


def int8_ops():
    """Integer ops only between the input QUANTIZE and the output: every one
    of them must match LCE bit for bit. Odd channel counts, stride 2, SAME and
    VALID padding, depthwise with a multiplier, explicit padding, max/average
    pooling, concatenation of differently scaled tensors, ADD, MUL, MEAN,
    dense and softmax."""
    import tf_keras as keras
    x_in = keras.Input((11, 9, 3))
    x = keras.layers.Conv2D(13, 3, strides=2, padding="same", activation="relu")(x_in)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(max_value=6.0)(x)
    x = keras.layers.ZeroPadding2D(((1, 0), (0, 1)))(x)
    a = keras.layers.MaxPool2D(2, strides=1, padding="valid")(x)
    b = keras.layers.AveragePooling2D(3, strides=1, padding="same")(a)
    c = keras.layers.Conv2D(7, 1)(a)
    x = keras.layers.concatenate([b, c])
    d = keras.layers.Conv2D(9, 3, padding="valid")(x)
    e = keras.layers.Conv2D(9, 3, padding="valid", use_bias=False)(x)
    x = keras.layers.add([d, e])
    x = keras.layers.multiply([x, keras.layers.Conv2D(9, 1)(x)])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(6, activation="softmax")(x)
    return keras.Model(x_in, x)


def int8_quicknet():
    """A QuickNet-shaped int8 model: int8 stem (conv stride 2 + ReLU,
    depthwise stride 2), binary residual blocks (float LceBconv2d between
    DEQUANTIZE and QUANTIZE, both pad values, odd channel counts), a
    transition with max pooling, depthwise and a 1x1 conv, an int8 head with
    average pooling, dense and softmax."""
    import larq as lq
    import tf_keras as keras
    x_in = keras.Input((20, 18, 3))
    x = keras.layers.Conv2D(12, 3, strides=2, padding="same", use_bias=False)(x_in)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    for pad in (1.0, 0.0):
        y = lq.layers.QuantConv2D(12, 3, padding="same", pad_values=pad, activation="relu", **_binary())(x)
        y = keras.layers.BatchNormalization()(y)
        x = keras.layers.add([x, y])
    x = keras.layers.MaxPool2D(2, strides=2, padding="same")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(17, 1, use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    y = lq.layers.QuantConv2D(17, 3, padding="same", pad_values=1.0, **_binary())(x)
    y = keras.layers.BatchNormalization()(y)
    x = keras.layers.add([x, y])
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.AveragePooling2D(pool_size=x.shape[1:3])(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(5, activation="softmax")(x)
    return keras.Model(x_in, x)


def int8_birealnet():
    """A Bi-Real-Net-shaped int8 model: 7x7 stem stride 2, max pooling, binary
    convs with stride 2 (both pad values) whose shortcut is average pooling
    and a 1x1 conv, a global mean and a dense head."""
    import larq as lq
    import tf_keras as keras
    x_in = keras.Input((19, 17, 3))
    x = keras.layers.Conv2D(11, 7, strides=2, padding="same", use_bias=False)(x_in)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.MaxPool2D(3, strides=2, padding="same")(x)
    y = lq.layers.QuantConv2D(11, 3, padding="same", pad_values=1.0, **_binary())(x)
    y = keras.layers.BatchNormalization()(y)
    x = keras.layers.add([x, y])
    for pad in (0.0, 1.0):
        s = keras.layers.AveragePooling2D(2, strides=2, padding="same")(x)
        s = keras.layers.Conv2D(15, 1, use_bias=False)(s)
        s = keras.layers.BatchNormalization()(s)
        y = lq.layers.QuantConv2D(15, 3, strides=2, padding="same", pad_values=pad, **_binary())(x)
        y = keras.layers.BatchNormalization()(y)
        x = keras.layers.add([s, y])
    x = keras.layers.Activation("relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(x_in, keras.layers.Dense(6)(x))


MODELS = {"bconv_stack": bconv_stack, "wide_dilated": wide_dilated, "float_ops": float_ops,
          "resnet20_binary_w1": resnet20_binary_w1, "grouped": grouped}

#: Models converted to int8 (int8 input and output, default range (-3, 3)).
INT8_MODELS = {"int8_model": int8_model, "int8_ops": int8_ops, "int8_quicknet": int8_quicknet,
               "int8_birealnet": int8_birealnet}


def randomize(model, seed):
    """Random BatchNorm statistics, negative gammas included, so thresholds and
    multipliers differ per channel and some flip sign."""
    rng = np.random.default_rng(seed)
    gen = {"gamma": lambda s: rng.uniform(-1.5, 1.5, s), "beta": lambda s: rng.normal(0, 0.5, s),
           "moving_mean": lambda s: rng.normal(0, 2, s), "moving_variance": lambda s: rng.uniform(0.5, 2, s)}
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            layer.set_weights([gen[w.name.split("/")[-1].split(":")[0]](w.shape).astype(np.float32)
                               for w in layer.weights])


def lce_outputs(fb, inputs):
    """LCE's reference kernels where they run the model; its optimized kernels
    where they do not (LCE's reference bconv refuses zero padding with an odd
    number of input channels)."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter
    try:
        interp, kernels = Interpreter(fb, num_threads=1, use_reference_bconv=True), "reference"
    except RuntimeError:
        interp, kernels = Interpreter(fb, num_threads=1), "optimized"
    return np.concatenate([np.asarray(interp.predict(x[None])).reshape(1, -1) for x in inputs]), kernels


def int8_io(fb):
    """(scale, zero point) of an int8 model's input and of its output."""
    from larq_compute_engine.tflite.python.interpreter import Interpreter
    interp = Interpreter(fb, num_threads=1)
    return [(float(interp.input_scales[0]), int(interp.input_zero_points[0])),
            (float(interp.output_scales[0]), int(interp.output_zero_points[0]))]


def tflite_quantize(x, scale, zero_point):
    """TFLite's QUANTIZE: float32 x / scale, rounded half away from zero,
    plus the zero point, clamped to int8."""
    r = (x / np.float32(scale)).astype(np.float32)
    q = np.sign(r) * np.floor(np.abs(r) + np.float32(0.5))
    return np.clip(q + zero_point, -128, 127).astype(np.int8)


def main():
    import larq_compute_engine as lce
    only = set(os.environ.get("FIXTURES", "").split(",")) - {""}
    for seed, (name, build) in enumerate(MODELS.items()):
        if only and name not in only:
            continue
        model = build()
        randomize(model, seed)
        fb = lce.convert_keras_model(model)
        rng = np.random.default_rng(100 + seed)
        inputs = rng.standard_normal((SAMPLES,) + tuple(model.input_shape[1:])).astype(np.float32)
        keras_out = np.asarray(model(inputs)).reshape(SAMPLES, -1)
        with open(os.path.join(HERE, f"{name}.tflite"), "wb") as f:
            f.write(fb)
        lce_out, kernels = lce_outputs(fb, inputs)
        np.savez_compressed(os.path.join(HERE, f"{name}.npz"), inputs=inputs, lce=lce_out,
                            keras=keras_out, lce_kernels=np.array(kernels))
        print(f"{name}: {len(fb):,} bytes, LCE {kernels} kernels")
    import tensorflow as tf
    for seed, (name, build) in enumerate(INT8_MODELS.items(), start=50):
        if only and name not in only:
            continue
        model = build()
        randomize(model, seed)
        fb = lce.convert_keras_model(model, inference_input_type=tf.int8, inference_output_type=tf.int8,
                                     experimental_default_int8_range=(-3.0, 3.0))
        with open(os.path.join(HERE, f"{name}.tflite"), "wb") as f:
            f.write(fb)
        rng = np.random.default_rng(100 + seed)
        inputs = rng.standard_normal((SAMPLES,) + tuple(model.input_shape[1:])).astype(np.float32)
        keras_out = np.asarray(model(inputs)).reshape(SAMPLES, -1)
        (in_scale, in_zp), (out_scale, out_zp) = int8_io(fb)
        inputs_q = tflite_quantize(inputs, in_scale, in_zp)
        lce_out, kernels = lce_outputs(fb, inputs_q)
        np.savez_compressed(os.path.join(HERE, f"{name}.npz"), inputs=inputs, inputs_q=inputs_q,
                            lce=lce_out.astype(np.int8), keras=keras_out, lce_kernels=np.array(kernels),
                            output_quantization=np.array([out_scale, out_zp], np.float64))
        print(f"{name}: {len(fb):,} bytes, LCE {kernels} kernels")

if __name__ == "__main__":
    main()
