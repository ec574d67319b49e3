"""Write the minimal reproducers of what the structure-aware fuzzer
(tests/fuzz/mutate.py) found into tests/fuzz/regressions/structured/, with
cases.json saying what each must give. Each file is one seed with one edit,
made here in code so the edit is readable; tests/test_hostile.py replays them
in a limited child (and ``mutate.py --replay`` too).

    python tests/fuzz/make_regressions.py

``expect``: "refused" (a bnnrt error whose message does not merely wrap a
Python exception), "equivalent" (loads and gives the seed's outputs within
``tolerance``), or "equivalent-or-refused". ``known``: why it still fails on
this branch (the test is an xfail until the fix lands), or null.
"""

from __future__ import annotations

import copy
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from structured import ROOT, bnn_serialise, load_seeds, tfl_serialise  # noqa: E402

OUT = os.path.join(HERE, "regressions", "structured")


def _seed(seeds, name):
    return next((copy.deepcopy(s), bytes(b) if b is not None else None)
                for t, n, s, b in seeds if n == name)


def _node(doc, op):
    return next(n for n in doc["nodes"] if n["op"] == op)


def _op(desc, builtin=None, custom=None):
    return next(op for op in desc["operators"]
                if (builtin is None or desc["codes"][op["opcode"]]["builtin"] == builtin)
                and (custom is None or desc["codes"][op["opcode"]]["custom"] == custom))


def cases(seeds):
    """(file name, bytes, manifest entry) of every reproducer."""
    out = []

    def bnn(name, seed, edit, **entry):
        doc, blob = _seed(seeds, seed)
        doc["_blob"] = blob             # an edit of the data section replaces it
        entry["what"] = edit(doc)
        blob = doc.pop("_blob")
        out.append((name, bnn_serialise(doc, blob), dict(entry, target="bnn", seed=seed)))

    def tfl(name, seed, edit, **entry):
        desc, _ = _seed(seeds, seed)
        entry["what"] = edit(desc)
        if entry["expect"].startswith("equivalent"):
            entry["seed_file"] = f"tests/data/lce/{seed}"
        out.append((name, tfl_serialise(desc, None), dict(entry, target="tflite", seed=seed)))

    # -- foreign exceptions: an attribute the op requires, missing
    def drop(op, key, default=None):
        def edit(doc):
            # where the attribute has its default value, the shape checks (which
            # assume the default) pass and only the kernel misses it
            node = next(n for n in doc["nodes"] if n["op"] == op and n["attrs"][key] == (default or n["attrs"][key]))
            del node["attrs"][key]
            return f"attrs.{key} ({'default ' if default else ''}{default or ''}) of the {op} node {node['name']!r} removed"
        return edit

    bnn("bnn_avgpool_float_without_pads.bnn", "float_ops.bnn", drop("avgpool_float", "pads", [0, 0, 0, 0]),
        expect="loads-or-refused", finding="exception", known="TypeError from the kernel's constructor at load "
        "(_core.pyx: __init__() needs keyword-only argument pads): required attributes are not checked")
    bnn("bnn_tfl_avgpool_without_strides.bnn", "int8_ops.bnn", drop("tfl_avgpool", "strides"),
        expect="loads-or-refused", finding="exception", known="loads, then run() raises TypeError (base.py: tfl_avgpool() "
        "missing 1 required keyword-only argument: 'strides'): required attributes are not checked")

    # -- opaque refusals: the message wraps a Python exception
    def options(builtin, field, value):
        def edit(desc):
            _op(desc, builtin)["options"][field] = value
            return f"options.{field} of the first builtin {builtin} operator = {value!r}"
        return edit

    tfl("tfl_conv2d_stride_0.tflite", "bconv_stack.tflite", options(3, "StrideH", 0), expect="refused",
        finding="opaque", known="'malformed operator (ZeroDivisionError: integer division or modulo by zero)'")
    tfl("tfl_maxpool_stride_0.tflite", "float_ops.tflite", options(17, "StrideH", 0), expect="refused",
        finding="opaque", known="'malformed operator (ZeroDivisionError ...)' for MAX_POOL_2D")

    def lce(key, value):
        def edit(desc):
            _op(desc, custom="LceBconv2d")["custom"][key] = value
            return f"custom option {key!r} of the first LceBconv2d = {value!r}"
        return edit

    tfl("tfl_lce_bconv2d_stride_0.tflite", "bconv_stack.tflite", lce("stride_height", 0), expect="refused",
        finding="opaque", known="'malformed operator (ZeroDivisionError ...)' for LceBconv2d")
    tfl("tfl_lce_bconv2d_channels_in_list.tflite", "bconv_stack.tflite", lce("channels_in", [1]),
        expect="refused", finding="opaque", known="'malformed operator (TypeError: int() argument must be ... "
        "not 'list')'")

    def no_options(builtin):
        def edit(desc):
            op = _op(desc, builtin)
            op["options_type"], op["options"] = 0, None
            return f"the first builtin {builtin} operator has no options table"
        return edit

    tfl("tfl_conv2d_without_options.tflite", "int8_model.tflite", no_options(3), expect="refused",
        finding="opaque", known="'malformed operator (AttributeError: 'NoneType' object has no attribute 'StrideH')'")

    def no_outputs(builtin):
        def edit(desc):
            _op(desc, builtin)["outputs"] = []
            return f"the first builtin {builtin} operator has no outputs"
        return edit

    tfl("tfl_maxpool_without_outputs.tflite", "float_ops.tflite", no_outputs(17), expect="refused",
        finding="opaque", known="'malformed operator (IndexError: list index out of range)'")

    # -- valid files refused or misread
    def same_names(desc):
        for t in desc["tensors"]:
            t["name"] = "t"
        return "every tensor named 't' (TFLite does not require unique names)"

    tfl("tfl_all_tensors_one_name.tflite", "float_ops.tflite", same_names, expect="equivalent", tolerance=0.0,
        finding="false-refusal", known="GraphError: tensor 't' is produced twice (duplicate names in progress)")

    def hybrid(desc):
        op = _op(desc, 3)
        t = desc["tensors"][op["inputs"][1]]
        w = np.frombuffer(desc["buffers"][t["buffer"]], "<f4").reshape(t["shape"])
        scale = float(np.abs(w).max()) / 127
        desc["buffers"].append(np.clip(np.round(w / scale), -127, 127).astype(np.int8).tobytes())
        t.update(type=9, buffer=len(desc["buffers"]) - 1,
                 quant={"scale": [scale], "zero_point": [0], "min": None, "max": None, "dim": 0})
        return f"the first CONV_2D's float weights stored as int8 with scale {scale:.4g} (hybrid quantization)"

    tfl("tfl_hybrid_conv2d.tflite", "float_ops.tflite", hybrid, expect="equivalent-or-refused", tolerance=0.05,
        finding="mismatch", known="the int8 weights run with their scale ignored (outputs off by ~1/scale)")

    def nan_weight(desc):
        op = _op(desc, 3)
        t = desc["tensors"][op["inputs"][1]]
        w = np.frombuffer(desc["buffers"][t["buffer"]], "<f4").copy()
        w[0] = np.nan
        desc["buffers"][t["buffer"]] = w.tobytes()
        return "one weight of the first CONV_2D is NaN"

    tfl("tfl_conv2d_nan_weight.tflite", "float_ops.tflite", nan_weight, expect="refused", finding="nonfinite",
        known=None)

    def huge_multiplier(doc):
        node = _node(doc, "bconv2d_float")
        k = node["consts"]["multiplier"]
        a = doc["arrays"][k]
        arr = np.full(a["shape"], 3.4e38, "<f4")
        blob = bytearray(doc.pop("_blob"))
        blob[a["offset"]:a["offset"] + arr.nbytes] = arr.tobytes()
        doc["_blob"] = bytes(blob)
        doc["outputs"].append(node["outputs"][0])    # seen before a quantize clamps the infinities away
        return (f"the multiplier of bconv2d_float {node['name']!r} is 3.4e38 (finite in float32; times y it "
                f"overflows), and its output is a graph output")

    bnn("bnn_bconv2d_float_huge_multiplier.bnn", "int8_quicknet.bnn", huge_multiplier, expect="refused",
        finding="nonfinite", known="accepted; every output of the layer is +-inf (float constants are checked "
        "finite, not in the range where the op's float32 arithmetic holds)")

    # -- certainly invalid files that load
    def recorded(index_of, axis):
        def edit(desc):
            i = index_of(desc)
            old = list(desc["tensors"][i]["shape"])
            desc["tensors"][i]["shape"][axis] += 1
            return f"tensor {i} recorded as {desc['tensors'][i]['shape']}, its operator computes {old}"
        return edit

    tfl("tfl_output_shape_recorded_wrong.tflite", "bconv_stack.tflite", recorded(lambda d: d["outputs"][0], 1),
        expect="refused", finding="accepted", known="loads: the output-shape check compares the recorded shape "
        "with itself (importer shape inference in progress)")
    tfl("tfl_pad_output_shape_recorded_wrong.tflite", "float_ops.tflite",
        recorded(lambda d: _op(d, 34)["outputs"][0], 1), expect="refused", finding="accepted",
        known="loads: recorded shapes of intermediate tensors are not compared with the inferred ones")

    tfl("tfl_dequantize_output_shape_recorded_wrong.tflite", "float_ops.tflite",
        recorded(lambda d: _op(d, custom="LceDequantize")["outputs"][0], 3), expect="refused",
        finding="accepted", known="loads: LceDequantize's float output was checked with the channel count "
        "of its bit input, not the one the file records")

    def fc_as_conv2d(desc):
        op = _op(desc, 9)
        op["opcode"] = next(k for k, c in enumerate(desc["codes"]) if c["builtin"] == 3 and not c["custom"])
        return "the FULLY_CONNECTED operator's opcode is CONV_2D (its filter is the 2-D weight matrix)"

    tfl("tfl_conv2d_rank2_filter.tflite", "bconv_stack.tflite", fc_as_conv2d, expect="refused",
        finding="opaque", known="'malformed operator (IndexError: tuple index out of range)': the float "
        "CONV_2D read the filter's fourth dimension before checking its rank")

    def overflowing_weights(desc):
        op = _op(desc, 3)
        t = desc["tensors"][op["inputs"][1]]
        w = np.frombuffer(desc["buffers"][t["buffer"]], "<f4")
        desc["buffers"][t["buffer"]] = np.where(np.arange(w.size) % 2, 3e38, -3e38).astype("<f4").tobytes()
        return "the first CONV_2D's weights are +-3e38 in turn (finite; their sums overflow float32)"

    tfl("tfl_conv2d_overflowing_weights.tflite", "grouped.tflite", overflowing_weights, expect="loads-or-refused",
        finding="mismatch", known="the oracle's matmul and the kernels overflow to other infinities and NaNs "
        "(the order of float32 sums); the sandbox now calls a difference after an overflow inconclusive")

    def duplicate_input(doc):
        doc["inputs"].append(dict(doc["inputs"][0]))
        return f"graph input {doc['inputs'][0]['name']!r} listed twice"

    bnn("bnn_duplicate_graph_input.bnn", "every_op.bnn", duplicate_input, expect="refused", finding="accepted",
        known="two graph inputs with one name are merged silently (in progress)")

    # -- planning time
    def fan_out(doc):
        src = _node(doc, "maxpool")["outputs"][0]
        attrs = {"kernel": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0]}
        doc["nodes"] += [{"op": "maxpool", "name": f"fan_{k}", "inputs": [src], "outputs": [f"fan_{k}"],
                          "attrs": attrs} for k in range(10000)]
        doc["outputs"] += [f"fan_{k}" for k in range(10000)]
        return f"10,000 1x1 maxpool nodes reading {src!r}, each a graph output"

    def big_pad(doc):
        node = _node(doc, "tfl_pad")
        node["attrs"]["pads"] = [100, 100, 100, 100]
        return f"the tfl_pad {node['name']!r} pads 100 pixels on each side (the layers after it do 50x the work)"

    bnn("bnn_tfl_pad_100.bnn", "int8_ops.bnn", big_pad, expect="loads-or-refused", finding="timeout",
        known="no answer within 10 s for pads of 255: honest work, not a hang; the sandbox's deadline now "
        "grows with the loaded model's MACs")

    bnn("bnn_fan_out_10000.bnn", "every_op.bnn", fan_out, expect="loads-or-refused", finding="timeout",
        known="no answer within 10 s: planning is quadratic in the node count (in progress)")
    return out


def main():
    seeds = load_seeds()
    os.makedirs(OUT, exist_ok=True)
    manifest = []
    for name, data, entry in cases(seeds):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        # what each reproducer found is kept; every one of those defects is
        # fixed now (issue 19), so none is an open, xfail'ed one ("known")
        entry = dict(entry, found=entry.pop("known") or "", known="")
        manifest.append(dict(file=name, **entry))
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    print(f"wrote {len(manifest)} reproducers to {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
