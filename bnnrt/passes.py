"""Rewrites of a built :class:`bnnrt.graph.Graph`, independent of the file
format it came from: an importer writes one layer per source op, then runs
the passes that fit. A pass returns a new graph and leaves its argument as it
was (nodes it does not change are shared, constants always are).
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

from .graph import Graph, Node

#: The add's fused activations a binary conv with a float epilogue applies
#: after its skip input (ops.BConv2DFloat's "activation").
_CONV_ACTIVATIONS = ("none", "relu", "relu6", "relu_n1_to_1")


def count_uses(graph: Graph) -> collections.Counter:
    """How many times each tensor is read: by a node's input (a node reading it
    twice counts twice) or as a graph output."""
    uses = collections.Counter(t for node in graph.nodes for t in node.inputs)
    uses.update(graph.outputs)
    return uses


def fuse_residual_adds(graph: Graph) -> Graph:
    """``add_float(bconv2d_float(x), r)`` -> ``bconv2d_float(x, skip=r)``: the
    residual add of every Larq block, done in the conv's epilogue (one pass
    over the output instead of two, exactly the separate add's rounding).

    Fused when the conv's output feeds only this add, ``r`` exists before the
    conv runs (a graph input, or written by an earlier node), the conv has no
    skip and no activation yet, and the add's activation is one the conv
    applies (it moves onto the conv, after the add). The conv keeps its place
    and name; the add's readers and the graph outputs read the conv instead.
    The first operand is tried as the conv's output first, then the second.
    An add that broadcasts one value per channel over the other operand is
    left alone: the conv's skip is a whole tensor of its output's shape."""
    uses = count_uses(graph)
    specs = _specs(graph) if any(n.op == "add_float" and len(n.inputs) == 2 for n in graph.nodes) else {}
    renamed: dict[str, str] = {}              # the output of a fused add -> its conv's output
    nodes: list[Node] = []
    written_by: dict[str, int] = {}           # tensor -> index in ``nodes`` of its (last) writer
    for node in graph.nodes:
        if any(t in renamed for t in node.inputs):
            node = dataclasses.replace(node, inputs=[renamed.get(t, t) for t in node.inputs])
        fused = _fusable_conv(node, nodes, written_by, uses, specs)
        if fused is not None:
            index, residual = fused
            conv = nodes[index]
            attrs = dict(conv.attrs)
            activation = node.attrs.get("activation", "none")
            if activation != "none":
                attrs["activation"] = activation
            nodes[index] = dataclasses.replace(conv, inputs=conv.inputs + [residual], attrs=attrs)
            renamed[node.outputs[0]] = conv.outputs[0]
            uses[conv.outputs[0]] = uses[node.outputs[0]]
            continue
        for t in node.outputs:
            written_by[t] = len(nodes)
        nodes.append(node)
    outputs = [renamed.get(t, t) for t in graph.outputs]
    return Graph(dict(graph.inputs), outputs, nodes, dict(graph.metadata))


def _specs(graph: Graph) -> dict:
    """The spec of every tensor of ``graph``, as its ops infer them."""
    from .ops import get_op
    specs = dict(graph.inputs)
    for node in graph.nodes:
        specs.update(zip(node.outputs, get_op(node).infer(node, [specs[t] for t in node.inputs])))
    return specs


def _fusable_conv(add: Node, nodes, written_by, uses, specs):
    """(index in ``nodes`` of the conv ``add`` fuses into, the residual tensor), or None."""
    if (add.op != "add_float" or len(add.inputs) != 2 or len(add.outputs) != 1
            or add.attrs.get("activation", "none") not in _CONV_ACTIVATIONS
            or specs[add.inputs[0]] != specs[add.inputs[1]]):
        return None
    for mine, other in ((add.inputs[0], add.inputs[1]), (add.inputs[1], add.inputs[0])):
        index = written_by.get(mine)
        if uses[mine] != 1 or index is None:
            continue
        conv = nodes[index]
        if conv.op != "bconv2d_float" or len(conv.inputs) != 1:
            continue
        if written_by.get(other, -1) >= index:
            continue                  # the residual is computed after the conv
        if conv.attrs.get("activation", "none") != "none":
            continue
        return index, other
    return None



def fuse_sign_affines(graph: Graph) -> Graph:
    """``sign_bits(add_float(mul_float(x, m), b))`` -> ``sign_bits(x)`` with the
    constants ``multiplier`` m and ``bias`` b: the BatchNorm before each binary
    layer of an imported model (a DenseNet's over its whole concatenation)
    computed inside the sign kernel, one pass over the tensor instead of three,
    with the same two float32 roundings. Also a lone add (m = 1: x * 1 is x)
    or a lone mul (b = 0: x * m + 0 has the sign of x * m, -0 included).

    The mul and the add must each take one finite constant operand, per
    channel or one value ((C,) or (1,)), have no activation, and write a
    tensor only the next op of the chain reads (not a graph output)."""
    from .ops import get_op
    uses = count_uses(graph)
    writer = {t: node for node in graph.nodes for t in node.outputs}
    specs = dict(graph.inputs)
    for node in graph.nodes:
        specs.update(zip(node.outputs, get_op(node).infer(node, [specs[t] for t in node.inputs])))

    def affine(t, op):
        """(node, operand at the channel count) if ``t`` is written by a fusable ``op``."""
        node = writer.get(t)
        if (node is None or node.op != op or len(node.inputs) != 1 or uses[t] != 1
                or node.attrs.get("activation", "none") != "none"):
            return None
        c = specs[t].channels
        operand = node.consts.get("operand")
        if (operand is None or operand.dtype != np.float32 or operand.shape not in ((1,), (c,))
                or not np.all(np.isfinite(operand))):
            return None
        return node, np.ascontiguousarray(np.broadcast_to(operand, (c,)), np.float32)

    dropped, replaced = set(), {}
    for node in graph.nodes:
        if node.op != "sign_bits" or node.consts or len(node.inputs) != 1:
            continue
        x = node.inputs[0]
        c = specs[x].channels
        mult, bias = np.ones(c, np.float32), np.zeros(c, np.float32)
        found = []
        add = affine(x, "add_float")
        if add is not None:
            found.append(add[0])
            x, bias = add[0].inputs[0], add[1]
        mul = affine(x, "mul_float")
        if mul is not None:
            found.append(mul[0])
            x, mult = mul[0].inputs[0], mul[1]
        if found:
            dropped.update(id(n) for n in found)
            replaced[id(node)] = dataclasses.replace(node, inputs=[x], consts={"multiplier": mult, "bias": bias})
    if not replaced:
        return graph
    nodes = [replaced.get(id(node), node) for node in graph.nodes if id(node) not in dropped]
    return Graph(dict(graph.inputs), list(graph.outputs), nodes, dict(graph.metadata))
