"""One-node ONNX models of the attention operators timed by run_peers.py.

Written with Debian's python3-onnx (1.12), which predates opset 23: the models are assembled with
onnx.helper only (no schema check by that version); ONNX Runtime validates them when it loads them.
Every model takes [B, N, H*D] float32 Q, K, V (the bnhd layout) with symbolic B and N.
"""

import os

import onnx
from onnx import TensorProto, helper

# ONNX Attention is opset 23; IR version 11 is the one that goes with opset 23.
OPSET = 23
IR_VERSION = 11
MS_DOMAIN = "com.microsoft"


def _tensor(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def _save(node, inputs, outputs, path):
    graph = helper.make_graph([node], os.path.splitext(os.path.basename(path))[0], inputs, outputs)
    model = helper.make_model(
        graph,
        producer_name="fastattn scripts/peers/onnx_models.py",
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
    )
    model.ir_version = IR_VERSION
    onnx.save(model, path)


def write_models(model_dir, heads, head_dim, kv_heads=None):
    """Writes the models into model_dir; returns {file name: description}."""
    kv_heads = kv_heads or heads
    os.makedirs(model_dir, exist_ok=True)
    hidden, kv_hidden = heads * head_dim, kv_heads * head_dim
    q = _tensor("query", ["B", "N", hidden])
    k = _tensor("key", ["B", "N", kv_hidden])
    v = _tensor("value", ["B", "N", kv_hidden])
    out = _tensor("output", ["B", "N", hidden])
    written = {}

    # com.microsoft MultiHeadAttention: with no mask, bias, past or present, the non-causal case
    # takes ORT's MLAS flash-attention kernel; unidirectional = 1 (causal) does not.
    if kv_heads == heads:
        for causal in (False, True):
            name = f"mha_{'causal' if causal else 'noncausal'}.onnx"
            node = helper.make_node("MultiHeadAttention", ["query", "key", "value"], ["output"],
                                    domain=MS_DOMAIN, num_heads=heads,
                                    unidirectional=int(causal))
            _save(node, [q, k, v], [out], os.path.join(model_dir, name))
            written[name] = f"com.microsoft.MultiHeadAttention num_heads={heads} " \
                            f"unidirectional={int(causal)}"

    # com.microsoft GroupQueryAttention: always causal (prompt processing, no past cache). Its
    # present_key/present_value outputs are declared: ORT's CPU flash path requires them.
    present = ["B", kv_heads, "N", head_dim]
    node = helper.make_node(
        "GroupQueryAttention",
        ["query", "key", "value", "", "", "seqlens_k", "total_sequence_length"],
        ["output", "present_key", "present_value"],
        domain=MS_DOMAIN, num_heads=heads, kv_num_heads=kv_heads)
    _save(node,
          [q, k, v, _tensor("seqlens_k", ["B"], TensorProto.INT32),
           _tensor("total_sequence_length", [], TensorProto.INT32)],
          [out, _tensor("present_key", present), _tensor("present_value", present)],
          os.path.join(model_dir, "gqa_causal.onnx"))
    written["gqa_causal.onnx"] = f"com.microsoft.GroupQueryAttention num_heads={heads} " \
                                 f"kv_num_heads={kv_heads}"

    # ONNX Attention (opset 23), 3-D inputs: q_num_heads / kv_num_heads split the hidden size.
    for causal in (False, True):
        name = f"attention23_{'causal' if causal else 'noncausal'}.onnx"
        node = helper.make_node("Attention", ["Q", "K", "V"], ["Y"], q_num_heads=heads,
                                kv_num_heads=kv_heads, is_causal=int(causal))
        _save(node,
              [_tensor("Q", ["B", "N", hidden]), _tensor("K", ["B", "N", kv_hidden]),
               _tensor("V", ["B", "N", kv_hidden])],
              [_tensor("Y", ["B", "N", hidden])], os.path.join(model_dir, name))
        written[name] = f"ai.onnx.Attention-{OPSET} q_num_heads={heads} kv_num_heads={kv_heads} " \
                        f"is_causal={int(causal)}"
    return written
