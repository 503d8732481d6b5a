"""The ONNX graphs of a trained Keras model: the windowed graph every family has and the step
graph of the families that decode token by token.

Every family exports to one signature: `tokens` int32 [batch, context] -> `logits` float32
[batch, context, vocab]. Convolutions go through tf2onnx. GRU and transformer models are
written from their weights instead: tf2onnx turns a Keras 3 GRU into an ONNX Loop over time
steps (its GRU rewriter matches Keras 2's graph), several times slower than ONNX's fused GRU op,
and a transformer into run-time shape arithmetic and layer norms spelled out op by op. The
direct graphs are held to the same parity check.
"""

import math

import numpy as np

OPSET = 17
DIRECT_FAMILIES = ("gru", "transformer")
INPUT_NAME = "tokens"
OUTPUT_NAME = "logits"


def export_onnx(model, family: str):
    """The trained Keras model as an onnx.ModelProto with the common signature."""
    import onnx

    proto = direct_graph(model) if family in DIRECT_FAMILIES else _tf2onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _tf2onnx(model):
    import tf2onnx

    from thunder_dagster.modeling.backend import tensorflow as tf

    context_length = model.inputs[0].shape[1]
    signature = (tf.TensorSpec((None, context_length), tf.int32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    if [output.name for output in proto.graph.output] != [OUTPUT_NAME]:
        raise ValueError(
            f"tf2onnx named the outputs {[o.name for o in proto.graph.output]}, "
            f"expected [{OUTPUT_NAME!r}]: the model's last layer must be named {OUTPUT_NAME!r}"
        )
    return proto


def _activation(nodes: list, name: str, source: str, activation: str) -> str:
    """ONNX nodes for keras' relu, gelu (exact, erf form) and swish; returns the output name."""
    from onnx import helper

    out = f"{name}_act"
    if activation == "relu":
        nodes.append(helper.make_node("Relu", [source], [out]))
    elif activation in ("swish", "silu"):
        nodes += [
            helper.make_node("Sigmoid", [source], [f"{name}_sig"]),
            helper.make_node("Mul", [source, f"{name}_sig"], [out]),
        ]
    elif activation == "gelu":
        nodes += [
            helper.make_node("Div", [source, "sqrt2"], [f"{name}_scaled"]),
            helper.make_node("Erf", [f"{name}_scaled"], [f"{name}_erf"]),
            helper.make_node("Add", [f"{name}_erf", "one"], [f"{name}_erf1"]),
            helper.make_node("Mul", [source, f"{name}_erf1"], [f"{name}_x"]),
            helper.make_node("Mul", [f"{name}_x", "half"], [out]),
        ]
    elif activation == "linear":
        return source
    else:
        raise ValueError(f"no ONNX form for activation {activation!r}")
    return out


SHARED_CONSTANTS = {
    "sqrt2": np.array(math.sqrt(2.0), np.float32),
    "one": np.array(1.0, np.float32),
    "half": np.array(0.5, np.float32),
    "axis0": np.array([0], np.int64),
    "axis1": np.array([1], np.int64),
    "zero_i": np.array(0, np.int64),
    "one_i": np.array(1, np.int64),
    "two_i": np.array(2, np.int64),
    "masked_out": np.array(-1e9, np.float32),
    "kept": np.array(0.0, np.float32),
}


class _GraphWriter:
    """Writes ONNX nodes for a functional Keras model, layer by layer, from its weights.

    Each Keras tensor maps to one ONNX value name; layers are visited in the model's
    topological order, so residual connections need nothing special.
    """

    def __init__(self, model, step: bool = False):

        self.model = model
        self.step = step
        self.context_length = model.inputs[0].shape[1]
        self.nodes: list = []
        self.state_inputs: list = []
        self.state_outputs: list = []
        self.attention_layers = 0
        self.step_positions: tuple[str, str] | None = None
        self.initializers: dict[str, object] = {}
        for name, value in SHARED_CONSTANTS.items():
            self.constant(name, value)
        self.names: dict[int, str] = {}

    def constant(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.setdefault(name, numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def dense(self, name: str, source: str, kernel: np.ndarray, bias: np.ndarray) -> str:
        k = self.constant(f"{name}_k", kernel.astype(np.float32))
        b = self.constant(f"{name}_b", bias.astype(np.float32))
        return self.node("Add", [self.node("MatMul", [source, k], f"{name}_mm"), b], f"{name}_lin")

    def write(self):
        from onnx import TensorProto, helper

        for layer in self.model.operations:
            node = layer._inbound_nodes[0]
            inputs = [self.names.get(id(tensor)) for tensor in node.input_tensors]
            if isinstance(layer, self._keras().layers.InputLayer):
                output = INPUT_NAME
            else:
                output = self.layer(layer, inputs)
            self.names[id(node.output_tensors[0])] = output
        final = self.names[id(self.model.outputs[0])]
        self.node("Identity", [final], OUTPUT_NAME)
        vocab_size = self.model.outputs[0].shape[-1]
        shape = ["batch", "steps" if self.step else self.context_length]
        graph = helper.make_graph(
            self.nodes,
            self.model.name,
            [
                helper.make_tensor_value_info(INPUT_NAME, TensorProto.INT32, shape),
                *self.state_inputs,
            ],
            [
                helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [*shape, vocab_size]),
                *self.state_outputs,
            ],
            [
                tensor
                for name, tensor in self.initializers.items()
                if any(name in node.input for node in self.nodes)
            ],
        )
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
        proto.ir_version = 8
        return proto

    @staticmethod
    def _helper():
        from onnx import helper

        return helper

    @staticmethod
    def _keras():
        from thunder_dagster.modeling.backend import keras

        return keras

    def layer(self, layer, inputs: list[str]) -> str:
        from thunder_dagster.modeling.architectures import PositionEmbedding

        keras = self._keras()
        name = layer.name
        if isinstance(layer, keras.layers.Dropout):
            return inputs[0]
        if isinstance(layer, keras.layers.Embedding):
            (table,) = layer.get_weights()
            table_name = self.constant(f"{name}_w", table.astype(np.float32))
            return self.node("Gather", [table_name, inputs[0]], f"{name}_out")
        if isinstance(layer, PositionEmbedding):
            (table,) = layer.get_weights()
            if self.step:
                table_name = self.constant(f"{name}_w", table.astype(np.float32))
                positions, _ = self.positions()
                rows = self.node("Gather", [table_name, positions], f"{name}_rows")
                return self.node("Add", [inputs[0], rows], f"{name}_out")
            table_name = self.constant(f"{name}_w", table[None].astype(np.float32))
            return self.node("Add", [inputs[0], table_name], f"{name}_out")
        if isinstance(layer, keras.layers.Add):
            return self.node("Add", inputs, f"{name}_out")
        if isinstance(layer, keras.layers.LayerNormalization):
            if layer.rms_scaling or not (layer.center and layer.scale) or layer.axis != [-1]:
                raise ValueError(f"layer {name}: only plain last-axis layer norms export")
            gamma, beta = layer.get_weights()
            return self.node(
                "LayerNormalization",
                [inputs[0], self.constant(f"{name}_g", gamma), self.constant(f"{name}_b", beta)],
                f"{name}_out",
                axis=-1,
                epsilon=float(layer.epsilon),
            )
        if isinstance(layer, keras.layers.Dense):
            kernel, bias = layer.get_weights()
            linear = self.dense(name, inputs[0], kernel, bias)
            activation = keras.activations.serialize(layer.activation)
            activation = activation if isinstance(activation, str) else activation["config"]
            return _activation(self.nodes, name, linear, activation.rsplit(">", 1)[-1])
        if isinstance(layer, keras.layers.GRU):
            return self.gru(layer, inputs[0])
        if isinstance(layer, keras.layers.MultiHeadAttention):
            return self.attention(layer, inputs)
        raise ValueError(f"layer {name} ({type(layer).__name__}) has no direct ONNX form")

    def state(self, input_name: str, output_name: str, shape: list) -> None:
        from onnx import TensorProto, helper

        self.state_inputs.append(
            helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)
        )
        self.state_outputs.append(
            helper.make_tensor_value_info(output_name, TensorProto.FLOAT, shape)
        )

    def positions(self) -> tuple[str, str]:
        """In a step graph: the absolute positions of this call's tokens, after the cached
        ones, and the causal mask [steps, cached + steps] over the keys."""
        if self.step_positions is None:
            past = self.node("Shape", ["past_key_0"], "past_shape")
            cached = self.node("Gather", [past, "two_i"], "cached_length")
            steps = self.node(
                "Gather", [self.node("Shape", [INPUT_NAME], "token_shape"), "one_i"], "step_count"
            )
            total = self.node("Add", [cached, steps], "total_length")
            rows = self.node("Range", [cached, total, "one_i"], "positions")
            columns = self.node("Range", ["zero_i", total, "one_i"], "key_positions")
            later = self.node(
                "Greater",
                [
                    self.node("Unsqueeze", [columns, "axis0"], "key_row"),
                    self.node("Unsqueeze", [rows, "axis1"], "query_column"),
                ],
                "future",
            )
            mask = self.node("Where", [later, "masked_out", "kept"], "step_mask")
            self.step_positions = (rows, mask)
        return self.step_positions

    def gru(self, layer, source: str) -> str:
        """Keras' GRU (reset_after=True) keeps the gates in ONNX's order (update, reset,
        candidate) and applies the reset gate after the recurrent matmul:
        linear_before_reset=1. ONNX's GRU is time-major; onnxruntime drops the transposes
        that cancel between stacked layers."""
        name = layer.name
        if not layer.reset_after or layer.go_backwards or not layer.return_sequences:
            raise ValueError(f"layer {name}: only forward GRUs with reset_after export")
        kernel, recurrent, bias = layer.get_weights()
        weights = [
            self.constant(f"{name}_W", kernel.T[None].astype(np.float32)),
            self.constant(f"{name}_R", recurrent.T[None].astype(np.float32)),
            self.constant(f"{name}_B", bias.reshape(1, -1).astype(np.float32)),
        ]
        time_major = self.node("Transpose", [source], f"{name}_tm", perm=[1, 0, 2])
        units = recurrent.shape[0]
        if self.step:
            index = len(self.state_inputs)
            self.state(f"state_{index}", f"next_state_{index}", [1, "batch", units])
            self.nodes.append(
                self._helper().make_node(
                    "GRU",
                    [time_major, *weights, "", f"state_{index}"],
                    [f"{name}_y", f"next_state_{index}"],
                    hidden_size=units,
                    linear_before_reset=1,
                )
            )
            y = f"{name}_y"
        else:
            y = self.node(
                "GRU",
                [time_major, *weights],
                f"{name}_y",
                hidden_size=units,
                linear_before_reset=1,
            )
        squeezed = self.node("Squeeze", [y, "axis1"], f"{name}_seq")
        return self.node("Transpose", [squeezed], f"{name}_out", perm=[1, 0, 2])

    def attention(self, layer, inputs: list[str]) -> str:
        """Causal self-attention as MatMul/Softmax with static head shapes (Keras scales the
        projected query by 1/sqrt(key_dim) and masks with a large negative number)."""
        name = layer.name
        kwargs = layer._inbound_nodes[0].arguments.kwargs
        if len(set(inputs)) != 1 or not kwargs.get("use_causal_mask"):
            raise ValueError(f"layer {name}: only causal self-attention exports")
        (wq, bq, wk, bk, wv, bv, wo, bo) = layer.get_weights()
        width, heads, key_dim = wq.shape
        # A step graph takes any number of new tokens; a windowed one exactly the context.
        t = -1 if self.step else self.context_length
        split = self.constant(f"{name}_split", np.array([0, t, heads, key_dim], np.int64))
        merge = self.constant(f"{name}_merge", np.array([0, t, heads * key_dim], np.int64))

        def project(part: str, kernel, bias, perm):
            flat = self.dense(f"{name}_{part}", inputs[0], kernel.reshape(width, -1), bias.ravel())
            shaped = self.node("Reshape", [flat, split], f"{name}_{part}_heads")
            return self.node("Transpose", [shaped], f"{name}_{part}_t", perm=perm)

        scale = self.constant(f"{name}_scale", np.array(1.0 / math.sqrt(key_dim), np.float32))
        q = self.node("Mul", [project("q", wq, bq, [0, 2, 1, 3]), scale], f"{name}_q_scaled")
        if self.step:
            index = self.attention_layers
            self.attention_layers += 1
            cache_shape = ["batch", heads, "cached", key_dim]
            self.state(f"past_key_{index}", f"present_key_{index}", cache_shape)
            self.state(f"past_value_{index}", f"present_value_{index}", cache_shape)
            keys = self.node(
                "Concat",
                [f"past_key_{index}", project("k", wk, bk, [0, 2, 1, 3])],
                f"present_key_{index}",
                axis=2,
            )
            v = self.node(
                "Concat",
                [f"past_value_{index}", project("v", wv, bv, [0, 2, 1, 3])],
                f"present_value_{index}",
                axis=2,
            )
            k = self.node("Transpose", [keys], f"{name}_keys_t", perm=[0, 1, 3, 2])
            _, mask_name = self.positions()
        else:
            k = project("k", wk, bk, [0, 2, 3, 1])
            v = project("v", wv, bv, [0, 2, 1, 3])
            mask = np.triu(np.full((t, t), -1e9, np.float32), k=1)
            mask_name = self.constant(f"{name}_mask", mask)
        scores = self.node("MatMul", [q, k], f"{name}_scores")
        masked = self.node("Add", [scores, mask_name], f"{name}_masked")
        weights = self.node("Softmax", [masked], f"{name}_weights", axis=-1)
        mixed = self.node("MatMul", [weights, v], f"{name}_mixed")
        mixed = self.node("Transpose", [mixed], f"{name}_mixed_t", perm=[0, 2, 1, 3])
        mixed = self.node("Reshape", [mixed, merge], f"{name}_merged")
        return self.dense(f"{name}_o", mixed, wo.reshape(heads * key_dim, width), bo)


def direct_graph(model):
    """The ONNX graph written straight from a GRU or transformer model's weights."""
    return _GraphWriter(model).write()


def export_step_onnx(model, family: str):
    """The generation graph: `tokens` [batch, steps] plus the state of the tokens before them
    (each GRU layer's hidden state; each attention layer's keys and values) in, `logits` and
    the next state out. A prompt goes in once; each new token then costs one step, not a pass
    over the whole context. None for families without one (dilated convolutions)."""
    import onnx

    if family not in DIRECT_FAMILIES:
        return None
    proto = _GraphWriter(model, step=True).write()
    onnx.checker.check_model(proto, full_check=True)
    return proto
