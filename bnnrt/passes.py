"""Rewrites of a built :class:`bnnrt.graph.Graph`, independent of the file
format it came from: an importer writes one layer per source op, then runs
the passes that fit. A pass returns a new graph and leaves its argument as it
was (nodes it does not change are shared, constants always are).
"""

from __future__ import annotations

import collections
import dataclasses

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
