"""Structure-aware mutation of ONNX files: exported PyTorch BNNs (the nets of
tests/test_onnx.py, both exporters) edited node by node (an attribute, an
initializer's values or length, an op type, an input dropped, swapped or
rewired, a graph input's dimension, a node deleted), each case loaded and run
in the limited child of tests/fuzz/sandbox.py.

    python tests/fuzz/onnx_mutate.py [--cases 1000] [--seed 0]

Needs torch and onnx. Deterministic: case i of seed s is always the same file.
Prints the outcomes and the first case of every finding class; exits 1 on a
finding. tests/test_hostile.py runs a short seeded run.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from sandbox import FINDING_KINDS, Sandbox  # noqa: E402

OP_TYPES = ["Conv", "Add", "Mul", "Sub", "Sign", "Relu", "Gemm", "MaxPool", "AveragePool", "Concat", "Reshape",
            "BatchNormalization", "PRelu", "Where", "Flatten", "GlobalAveragePool", "ReduceMean", "Abs"]


def seeds(exporters=("torchscript", "dynamo")) -> list[bytes]:
    """The Bi-Real-style, ReActNet-style and spelling nets of tests/test_onnx.py,
    calibrated, exported by each of ``exporters``."""
    import torch
    sys.path.insert(0, os.path.dirname(HERE))
    import test_onnx as t
    torch.set_num_threads(1)
    torch.manual_seed(0)
    out = []
    for i, make in enumerate((t.BiReal, t.ReActNet, t.Spellings)):
        net = t.calibrated(make(), seed=i)
        for exporter in exporters:
            data = t.export(net, exporter == "dynamo")
            out.append(data if isinstance(data, bytes) else data.getvalue())
    return out


def mutate(model, rng: random.Random) -> list[str]:
    """Apply one to three edits to ``model`` (an onnx.ModelProto) in place;
    what each did."""
    import onnx
    from onnx import numpy_helper
    g, done = model.graph, []
    for _ in range(rng.randint(1, 3)):
        kind = rng.randrange(9)
        node = rng.choice(list(g.node)) if g.node else None
        if kind == 0 and node is not None:
            ints = [a for a in node.attribute if a.type in (onnx.AttributeProto.INT, onnx.AttributeProto.INTS)]
            if ints:
                a, v = rng.choice(ints), rng.choice([0, -1, 2, 3, 7, 1 << 20, -(1 << 31), 255])
                if a.type == onnx.AttributeProto.INT:
                    a.i = v
                elif a.ints:
                    a.ints[rng.randrange(len(a.ints))] = v
                done.append(f"{node.op_type}.{a.name} = {v}")
        elif kind in (1, 2) and g.initializer:
            t = rng.choice(list(g.initializer))
            arr = numpy_helper.to_array(t).copy()
            if kind == 2 and arr.size > 1:
                t.CopyFrom(numpy_helper.from_array(arr.reshape(-1)[:-1], t.name))
                done.append(f"initializer {t.name} one value short")
            elif arr.size and arr.dtype.kind in "fi":
                v = rng.choice([0.0, -0.0, 1e38, -1e38, np.nan, np.inf, 1e-45] if arr.dtype.kind == "f"
                               else [0, -1, 5, 1 << 40, -(1 << 40)])
                arr.flat[rng.randrange(arr.size)] = v
                t.CopyFrom(numpy_helper.from_array(arr, t.name))
                done.append(f"initializer {t.name}: one value = {v}")
        elif kind == 3 and node is not None:
            old, node.op_type = node.op_type, rng.choice(OP_TYPES)
            done.append(f"{old} node {node.name!r} -> {node.op_type}")
        elif kind == 4 and node is not None and node.input:
            del node.input[rng.randrange(len(node.input))]
            done.append(f"{node.op_type} {node.name!r}: an input dropped")
        elif kind == 5 and node is not None and len(node.input) >= 2:
            node.input[0], node.input[1] = node.input[1], node.input[0]
            done.append(f"{node.op_type} {node.name!r}: inputs swapped")
        elif kind == 6 and node is not None and node.input:
            other = rng.choice(list(g.node))
            node.input[rng.randrange(len(node.input))] = other.output[0]
            done.append(f"{node.op_type} {node.name!r}: an input rewired to {other.output[0]!r}")
        elif kind == 7 and g.input and g.input[0].type.tensor_type.shape.dim:
            dims = g.input[0].type.tensor_type.shape.dim
            j, v = rng.randrange(len(dims)), rng.choice([0, 1, 2, 3, 1000, 100000])
            dims[j].dim_value = v
            done.append(f"graph input dimension {j} = {v}")
        elif kind == 8 and node is not None:
            g.node.remove(node)
            done.append(f"{node.op_type} node {node.name!r} deleted")
    return done


def fuzz(cases: int, seed: int = 0, sources=None, timeout: float = 10.0):
    """(counts by outcome, {finding kind: (case, mutations, detail)}) over ``cases`` cases."""
    import onnx
    models = [onnx.load_from_string(s) for s in (sources or seeds())]
    counts, findings = {}, {}
    with Sandbox(timeout=timeout) as box:
        for i in range(cases):
            rng = random.Random(seed * 1_000_003 + i)
            model = copy.deepcopy(models[rng.randrange(len(models))])
            done = mutate(model, rng)
            kind, detail, _ = box.run("onnx", model.SerializeToString())
            counts[kind] = counts.get(kind, 0) + 1
            if kind in FINDING_KINDS:
                findings.setdefault(f"{kind}: {detail.split(':', 1)[0]}", (i, done, detail))
    return counts, findings


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    counts, findings = fuzz(args.cases, args.seed)
    print(f"onnx_mutate.py: {sum(counts.values())} cases (seed {args.seed}): "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    for cls, (i, done, detail) in findings.items():
        print(f"FINDING {cls}: case {i}: {detail}\n    mutations: {done}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
