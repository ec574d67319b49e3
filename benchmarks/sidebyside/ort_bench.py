"""ONNX Runtime side of benchmarks/compare.py: the float32 networks a user
would run without a BNN engine. Runs inside its own virtualenv (anchors.md).

    python ort_bench.py --runs 200 [--threads 1]

Prints one JSON object: {model: {"median_ms": ..., "params": ...}} for
  resnet20        classic ResNet-20 (16/32/64 channels, 0.27 M params)
  resnet20b_twin  the float twin of the binary ResNet-20 (64/128/256, 4.3 M)
Models are built with random weights (BatchNorm folded, as ORT would after
optimization) straight from onnx.helper: no PyTorch needed.
"""

import argparse
import json
import statistics
import time

import numpy as np


def resnet20(width=1, bireal=False, seed=0):
    """Classic ResNet-20 (bireal=False: two convs per residual) or the float
    twin of the binary ResNet-20 (bireal=True: a shortcut around every conv)."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    count = [0]

    def name(p):
        count[0] += 1
        return f"{p}{count[0]}"

    def conv(x, cin, cout, k, stride, relu):
        w, b = name("w"), name("b")
        inits.append(numpy_helper.from_array(
            (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32), w))
        inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), b))
        y = name("conv")
        nodes.append(helper.make_node("Conv", [x, w, b], [y], kernel_shape=[k, k],
                                      strides=[stride, stride], pads=[k // 2] * 4))
        if relu:
            r = name("relu")
            nodes.append(helper.make_node("Relu", [y], [r]))
            return r
        return y

    def add(a, b, relu=True):
        y = name("add")
        nodes.append(helper.make_node("Add", [a, b], [y]))
        if relu:
            r = name("relu")
            nodes.append(helper.make_node("Relu", [y], [r]))
            return r
        return y

    x = conv("input", 3, 16 * width, 3, 1, True)
    cin = 16 * width
    for stage, c in enumerate([16 * width, 32 * width, 64 * width]):
        for block in range(3):
            stride = 2 if (stage > 0 and block == 0) else 1
            if bireal:
                for i in range(2):
                    s = stride if i == 0 else 1
                    short = x if (s == 1 and cin == c) else conv(x, cin, c, 1, s, False)
                    x = add(conv(x, cin, c, 3, s, False), short, relu=False)
                    cin = c
            else:
                short = x if (stride == 1 and cin == c) else conv(x, cin, c, 1, stride, False)
                y = conv(x, cin, c, 3, stride, True)
                y = conv(y, c, c, 3, 1, False)
                x = add(y, short)
                cin = c
    pooled = name("gap")
    nodes.append(helper.make_node("GlobalAveragePool", [x], [pooled]))
    flat = name("flat")
    nodes.append(helper.make_node("Flatten", [pooled], [flat]))
    fw, fb = name("fcw"), name("fcb")
    inits.append(numpy_helper.from_array((rng.standard_normal((cin, 10)) * 0.1).astype(np.float32), fw))
    inits.append(numpy_helper.from_array(np.zeros(10, np.float32), fb))
    nodes.append(helper.make_node("Gemm", [flat, fw, fb], ["logits"]))
    graph = helper.make_graph(nodes, "resnet20", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    params = sum(int(np.prod(i.dims)) for i in inits)
    return model.SerializeToString(), params


def time_model(blob, runs, threads):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32)
    for _ in range(10):
        sess.run(None, {"input": x})
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, {"input": x})
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    out = {}
    for key, (width, bireal) in {"resnet20": (1, False), "resnet20b_twin": (4, True)}.items():
        blob, params = resnet20(width, bireal)
        out[key] = {"median_ms": time_model(blob, args.runs, args.threads), "params": params}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
