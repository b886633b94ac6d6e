"""The exported graph made fast on ONNX Runtime's CPU kernels, before it is saved (fp32) and quantized (int8).

`torch.onnx.export(dynamo=True)` writes attention as a dozen plain ops (MatMul, Transpose, Softmax, and Where/IsNaN
for the mask), which ONNX Runtime's own fusions do not recognise. onnxscript's ONNX Runtime fusions
(`onnxscript.rewriter.ort_fusions.optimize_for_ort`, written for dynamo-exported graphs) rewrite them into ONNX
Runtime's `Attention`, `BiasGelu` and `SkipLayerNormalization` ops. Three edits follow, each measured on CoNLL-2003
with the MiniLM NER model (docs/serving.md):

- the packed Q/K/V weights of `Attention`, a `Concat` of three initializers, are folded into one initializer, and its
  `qkv_hidden_sizes` attribute dropped when the three sizes are equal (the op's default), so that dynamic
  quantization turns it into `QAttention` (int8 weights): the largest int8 gain;
- `SkipLayerNormalization` is written back as `Add` + `LayerNormalization` (and `onnx_backend.DISABLED_OPTIMIZERS`
  keeps ONNX Runtime from fusing it again): its CPU kernel is slower than the two ops in onnxruntime 1.32;
- nothing else: a pattern that does not match leaves the graph as exported, and the export is validated either way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def fold_constant_concats(graph) -> int:
    """Replace each `Concat` whose inputs are all initializers by one initializer; returns how many."""
    import numpy as np
    from onnx import numpy_helper

    initializers = {tensor.name: tensor for tensor in graph.initializer}
    kept, folded = [], 0
    for node in graph.node:
        if node.op_type == "Concat" and node.input and all(name in initializers for name in node.input):
            axis = next(attribute.i for attribute in node.attribute if attribute.name == "axis")
            value = np.concatenate([numpy_helper.to_array(initializers[name]) for name in node.input], axis=axis)
            tensor = numpy_helper.from_array(value, node.output[0])
            graph.initializer.append(tensor)
            initializers[tensor.name] = tensor
            folded += 1
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    unused = [tensor for tensor in graph.initializer if tensor.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return folded


def drop_uniform_qkv_sizes(graph) -> int:
    """Drop `Attention`'s `qkv_hidden_sizes` where Q, K and V are the same size (what the op assumes without it, and
    what ONNX Runtime's quantizer needs to make it `QAttention`); returns how many."""
    dropped = 0
    for node in graph.node:
        if node.op_type != "Attention":
            continue
        sizes = [attribute for attribute in node.attribute if attribute.name == "qkv_hidden_sizes"]
        if sizes and len(set(sizes[0].ints)) == 1:
            node.attribute.remove(sizes[0])
            dropped += 1
    return dropped


def unfuse_skip_layer_norm(graph) -> int:
    """Write each `SkipLayerNormalization` as `Add` (+ `Add` of its bias) and `LayerNormalization`; returns how many.
    Left alone where its mean / inverse-std outputs are used (they have no equivalent here)."""
    from onnx import helper

    used = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    nodes, unfused = [], 0
    for node in graph.node:
        if node.op_type != "SkipLayerNormalization" or any(name and name in used for name in node.output[1:3]):
            nodes.append(node)
            continue
        inputs = list(node.input) + [""] * (5 - len(node.input))
        source, skip, gamma, beta, bias = inputs[:5]
        epsilon = next((attribute.f for attribute in node.attribute if attribute.name == "epsilon"), 1e-12)
        total = node.output[3] if len(node.output) > 3 and node.output[3] else f"{node.name}_sum"
        if bias:  # the bias belongs to `source` (a MatMul's output): added first, ONNX Runtime folds it into it
            nodes.append(helper.make_node("Add", [source, bias], [f"{node.name}_biased"], name=f"{node.name}_bias"))
            nodes.append(helper.make_node("Add", [f"{node.name}_biased", skip], [total], name=f"{node.name}_add"))
        else:
            nodes.append(helper.make_node("Add", [source, skip], [total], name=f"{node.name}_add"))
        nodes.append(
            helper.make_node(
                "LayerNormalization",
                [total, gamma] + ([beta] if beta else []),
                [node.output[0]],
                name=f"{node.name}_norm",
                axis=-1,
                epsilon=epsilon,
            )
        )
        unfused += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return unfused


def optimize_graph(source: Path, target: Path) -> dict[str, Any]:
    """Write `source`'s graph, optimized for ONNX Runtime, to `target`; returns what was done. A failure of the
    fusions (an architecture they do not know) writes the graph as exported and says why."""
    import onnx
    import onnx_ir
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    try:
        model = onnx_ir.load(str(source))
        model, counts = optimize_for_ort(model)
        proto = onnx_ir.to_proto(model)
    except Exception as err:  # onnxscript's rewriter raises its own types; the graph as exported still works
        logger.warning("The ONNX Runtime fusions failed (%s); keeping the graph as exported", err)
        onnx.save(onnx.load(str(source)), str(target))
        return {"fusions": {}, "error": " ".join(str(err).split())[:300]}
    edits = {
        "folded_concats": fold_constant_concats(proto.graph),
        "attention_qkv_sizes_dropped": drop_uniform_qkv_sizes(proto.graph),
        "skip_layer_norms_unfused": unfuse_skip_layer_norm(proto.graph),
    }
    onnx.save(proto, str(target))
    ops: dict[str, int] = {}
    for node in proto.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return {
        "fusions": {name: count for name, count in counts.items() if count},
        **edits,
        "ops": dict(sorted(ops.items(), key=lambda item: -item[1])[:12]),
    }
