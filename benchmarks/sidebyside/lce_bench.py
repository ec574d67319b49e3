"""Larq Compute Engine side of benchmarks/compare.py. Runs inside LCE's own
virtualenv (anchors.md: TensorFlow 2.16, numpy < 2), never imported by bnnrt.

    python lce_bench.py --runs 200 [--models resnet20b,conv56,quicknet] [--save-dir DIR]
    python lce_bench.py --runs 200 --models ... --time-dir DIR

Prints one JSON object: {model: {"median_ms": ..., "binary_macs": ...}}, for
LCE's best x86 setting (indirect BGEMM, one thread). With --save-dir the
converted .tflite files are written there too (for the importer's tests);
--time-dir only times the files DIR/{model}.tflite written before (so a
caller can alternate LCE and bnnrt on the same files).
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402


def binary_resnet20(width=4):
    """Binary ResNet-20 of anchors.md: float stem, binary 3x3 convs with their
    own shortcut (Bi-Real style), float 1x1 downsample shortcuts; 642 M binary
    MACs at width 4 (64/128/256 channels)."""
    import larq as lq
    import tf_keras as keras
    kw = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign",
              kernel_constraint="weight_clip", use_bias=False, pad_values=1.0)
    x_in = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16 * width, 3, padding="same", use_bias=False)(x_in)
    x = keras.layers.BatchNormalization(momentum=0.9)(x)
    for stage, c in enumerate([16 * width, 32 * width, 64 * width]):
        for block in range(3):
            for conv in range(2):
                stride = 2 if (stage > 0 and block == 0 and conv == 0) else 1
                shortcut = x
                if stride != 1:
                    shortcut = keras.layers.Conv2D(c, 1, strides=2, use_bias=False)(x)
                    shortcut = keras.layers.BatchNormalization(momentum=0.9)(shortcut)
                y = lq.layers.QuantConv2D(c, 3, strides=stride, padding="same", **kw)(x)
                y = keras.layers.BatchNormalization(momentum=0.9)(y)
                x = keras.layers.add([y, shortcut])
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(10)(x)
    return keras.Model(x_in, x)


def one_conv56():
    import larq as lq
    import tf_keras as keras
    x_in = keras.Input((56, 56, 64))
    y = lq.layers.QuantConv2D(64, 3, padding="same", pad_values=1.0, input_quantizer="ste_sign",
                              kernel_quantizer="ste_sign", use_bias=False)(x_in)
    return keras.Model(x_in, y)


def zoo_model(name):
    """A larq_zoo architecture with random weights (pretrained weights are a
    download this machine cannot make; the architecture is what the speed and
    the importer's coverage depend on)."""
    import larq_zoo as lqz
    cls = {"quicknet": lqz.sota.QuickNet, "quicknet_small": lqz.sota.QuickNetSmall,
           "quicknet_large": lqz.sota.QuickNetLarge, "birealnet": lqz.literature.BiRealNet,
           "binary_resnet_e18": lqz.literature.BinaryResNetE18,
           "binary_densenet28": lqz.literature.BinaryDenseNet28, "binary_densenet37": lqz.literature.BinaryDenseNet37,
           "binary_densenet45": lqz.literature.BinaryDenseNet45}[name]
    return cls(weights=None)


MODELS = {
    "resnet20b": (binary_resnet20, 642_252_800),
    "conv56": (one_conv56, 115_605_504),
    **{name: ((lambda name=name: zoo_model(name)), None)
       for name in ("quicknet_small", "quicknet", "quicknet_large", "birealnet", "binary_resnet_e18",
                    "binary_densenet28", "binary_densenet37", "binary_densenet45")},
}


def randomize(model, seed=0):
    """Random BN statistics so thresholds differ per channel (LCE folds them);
    BatchNorms without scale or center (QuickNet's) have fewer weights."""
    rng = np.random.default_rng(seed)
    gen = {"gamma": lambda s: rng.uniform(0.5, 1.5, s), "beta": lambda s: rng.normal(0, 0.1, s),
           "moving_mean": lambda s: rng.normal(0, 1, s), "moving_variance": lambda s: rng.uniform(0.5, 2, s)}
    for layer in model.layers:
        if layer.__class__.__name__ == "BatchNormalization":
            layer.set_weights([gen[w.name.split("/")[-1].split(":")[0]](w.shape).astype(np.float32)
                               for w in layer.weights])


def time_interpreter(fb, runs, shape, max_seconds=60.0):
    from larq_compute_engine.tflite.python.interpreter import Interpreter
    interp = Interpreter(fb, num_threads=1, use_indirect_bgemm=True)
    x = np.random.default_rng(0).standard_normal((1,) + shape).astype(np.float32)
    for _ in range(3):
        interp.predict(x)
    times = []
    deadline = time.perf_counter() + max_seconds
    for _ in range(runs):
        if times and time.perf_counter() > deadline:
            break
        t = time.perf_counter()
        interp.predict(x)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main():
    import larq_compute_engine as lce
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--models", default="resnet20b,conv56")
    ap.add_argument("--save-dir")
    ap.add_argument("--time-dir")
    args = ap.parse_args()
    out = {}
    if args.time_dir:
        import tensorflow as tf
        for name in args.models.split(","):
            with open(os.path.join(args.time_dir, f"{name}.tflite"), "rb") as f:
                fb = f.read()
            shape = tuple(tf.lite.Interpreter(model_content=fb).get_input_details()[0]["shape"][1:])
            out[name] = {"median_ms": time_interpreter(fb, args.runs, shape), "binary_macs": MODELS[name][1],
                         "input_shape": [int(d) for d in shape]}
        print(json.dumps(out))
        return
    for name in args.models.split(","):
        build, macs = MODELS[name]
        model = build()
        randomize(model)
        last = model.layers[-1]
        if getattr(last, "activation", None) is not None and last.activation.__name__ == "softmax" \
                and last.__class__.__name__ == "Activation":
            # compare logits, not saturated probabilities (random weights)
            import tf_keras as keras
            model = keras.Model(model.input, model.layers[-2].output)
        fb = lce.convert_keras_model(model)
        if args.save_dir:
            # the file, and LCE's outputs on two random inputs (for tools/lce_zoo_check.py)
            from larq_compute_engine.tflite.python.interpreter import Interpreter
            os.makedirs(args.save_dir, exist_ok=True)
            with open(os.path.join(args.save_dir, f"{name}.tflite"), "wb") as f:
                f.write(fb)
            x = np.random.default_rng(1).standard_normal((2,) + tuple(model.input_shape[1:]))
            x = x.astype(np.float32)
            interp = Interpreter(fb, num_threads=1)
            lce_out = np.concatenate([np.asarray(interp.predict(s[None])).reshape(1, -1) for s in x])
            keras_out = np.asarray(model(x)).reshape(2, -1)
            np.savez(os.path.join(args.save_dir, f"{name}.npz"), inputs=x, lce=lce_out, keras=keras_out)
        shape = tuple(model.input_shape[1:])
        out[name] = {"median_ms": time_interpreter(fb, args.runs, shape), "binary_macs": macs,
                     "input_shape": list(shape)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
