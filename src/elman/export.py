"""``elman export``: a saved text classifier as a standard ONNX graph, runnable by any ONNX
runtime without elman or PyTorch.

    ids (N, T) int64 -> Gather(embedding) -> Transpose (T, N, E) -> RNN -> Y_h (N, H)
        -> Gemm(dense) -> Sigmoid (two classes: P(positive), (N,)) or Softmax (N, C)

The recurrence is ONNX's own ``RNN`` operator, ``H_t = f(X_t·Wᵀ + H_{t-1}·Rᵀ + Wb + Rb)``.
elman's ``A`` multiplies ``[h_{t-1}; x_t]``, so ``R = A[:, :H]``, ``W = A[:, H:]``, ``Wb = b``
and ``Rb = 0``. The padding in front of a review is read as the model reads it (the reference
model's way), so the probabilities are elman's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from elman.errors import UserError
from elman.files import atomic_write

OPSET = 17


def onnx_graph(trained):
    """The ``onnx.ModelProto`` of a trained text classifier (the reference architecture)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model, config = trained.model, trained.config.model
    layer = None
    if trained.config.reads_text and model.rnn is not None and model.cell.onnx is not None:
        layer = model.cell.onnx(model.rnn)
    if layer is None or config.mask_padding or config.pooling != "last":
        raise UserError(
            "export writes the reference architecture (one SimpleRNN read forwards, its last "
            "state into the dense layer, the padding read, tanh or relu); this model differs: "
            "train one with `architecture` rnn, no `layers`, `bidirectional`, `pooling` or "
            "`mask_padding`"
        )
    weights = _weights(model, layer["inputs"])
    two_classes = model.classes == 2
    nodes = [
        helper.make_node("Gather", ["embedding", "ids"], ["embedded"]),
        helper.make_node("Transpose", ["embedded"], ["steps_first"], perm=[1, 0, 2]),
        helper.make_node(
            layer["op"],
            ["steps_first", *layer["inputs"]],
            ["", "last_state"],
            **layer["attributes"],
        ),
        helper.make_node("Squeeze", ["last_state", "first"], ["h"]),
        helper.make_node("Gemm", ["h", "dense_weight", "dense_bias"], ["logits"], transB=1),
    ]
    if two_classes:
        nodes += [
            helper.make_node("Sigmoid", ["logits"], ["sigmoid"]),
            helper.make_node("Squeeze", ["sigmoid", "second"], ["probability"]),
        ]
        output = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["batch"])
    else:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probability"], axis=1))
        output = helper.make_tensor_value_info(
            "probability", TensorProto.FLOAT, ["batch", model.classes]
        )
    graph = helper.make_graph(
        nodes,
        "elman",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", config.max_len])],
        [output],
        initializer=[
            numpy_helper.from_array(np.ascontiguousarray(v), k) for k, v in weights.items()
        ],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.doc_string = (
        f"elman {trained.config.source} classifier; classes {trained.config.classes}; "
        f"ids from its vocabulary.txt, padded in front to {config.max_len}"
    )
    onnx.checker.check_model(proto)
    return proto


def _weights(model, recurrent: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's constant tensors: the embedding, the recurrent layer's (its kind's
    ``onnx``: W, R, B for ONNX's RNN), the dense layer, and the axes to squeeze."""
    return {
        "embedding": model.embedding.weight.detach().cpu().numpy(),
        **recurrent,
        "dense_weight": model.dense.weight.detach().cpu().numpy(),
        "dense_bias": model.dense.bias.detach().cpu().numpy(),
        "first": np.array([0], dtype=np.int64),  # axes to squeeze
        "second": np.array([1], dtype=np.int64),
    }


def export_onnx(folder: str | Path, path: str | Path) -> Path:
    """Write the model saved in ``folder`` to ``path`` as ONNX (atomically)."""
    from elman.inference import load

    path = Path(path)
    if path.suffix != ".onnx":
        raise UserError(f"`onnx` {path}: give a file name ending in .onnx")
    proto = onnx_graph(load(folder))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, proto.SerializeToString())
    return path
