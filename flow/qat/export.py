"""A QAT Keras model -> the integer QNet its inference forward computes (BN folded).

One definition of how a QNet is built: the model is read as a float graph by `flow.quant.keras_graph`
(QAT adder layers are `AdderConv2D`s with their float kernels, qkeras `QConv2D`s are `Conv2D`s, the
quantizer layers become ReLUs / identities) and turned into integers by `redistribution.build_qnet`,
whose calibration statistics are replaced by the ranges the model's quantizers hold. With method
redistribution+ and no corrections, build_qnet quantizes each adder kernel on its input's grid with
the range-clamp excess in the bias (`AdderKernelQuantizer`'s forward), the first conv and classifier
per channel (`ChannelKernelQuantizer`), and every requant from the folded BN: exactly the fake-quant
forward, up to the 24-bit rounding of the requant multipliers.
"""

from __future__ import annotations

from flow.errors import AdderFlowError
from flow.qnet import QNet


class _ModelRanges:
    """The calibration-statistics interface `build_qnet` reads, answered from the model's quantizers."""

    def __init__(self, input_scale: float, input_bits: int, act_alpha: dict, out_scale: dict, out_bits: int):
        self.input_absmax = input_scale * ((1 << (input_bits - 1)) - 1)
        self.act_alpha = act_alpha
        # build_qnet gives a signed output the scale 1.25 * absmax / (2^(b-1) - 1)
        self.out_absmax = {t: s * ((1 << (out_bits - 1)) - 1) / 1.25 for t, s in out_scale.items()}
        self.n_images, self.alphas, self.pre_mean, self.pre_mean_images = 0, (), {}, 0

    def clamp(self, tensor: str, alpha) -> float:
        if tensor not in self.act_alpha:
            raise AdderFlowError(f"tensor {tensor}: its ReLU has no QAT activation quantizer (use QATActivation)")
        return self.act_alpha[tensor]

    def mse_clamp(self, tensor: str, bits: int) -> float:
        return self.clamp(tensor, None)


def _parents(layer) -> list:
    inbound = layer._inbound_nodes[0].inbound_layers
    return list(inbound) if isinstance(inbound, (list, tuple)) else [inbound]


def strip(model):
    """(float model keras_graph reads, {requant output tensor: alpha}, input quantizer, preprocess,
    output quantizer, {tensor: bits})."""
    import tensorflow as tf

    from flow.qat.layers import QATActivation, QATInput
    from flow.qat.quantizers import ActQuantizer, SignedQuantizer

    L = tf.keras.layers
    alphas, bits, inq, pre, outq = {}, {}, None, None, None
    for layer in model.layers:
        if isinstance(layer, QATInput):
            if inq is not None:
                raise AdderFlowError(f"layer {layer.name}: a model has one QATInput")
            inq, pre = layer.quantizer, {"mean": list(layer.mean), "std": list(layer.std)}
        elif isinstance(layer, QATActivation):
            q = layer.quantizer
            if isinstance(q, ActQuantizer):
                parent = _parents(layer)[0]
                if not isinstance(parent, (L.BatchNormalization, L.Add)):
                    raise AdderFlowError(f"layer {layer.name}: an activation quantizer must follow a "
                                         f"BatchNormalization or Add, not {type(parent).__name__}")
                # keras_graph names the requant of a ReLU after an expression '<parent>_out'
                alphas[f"{parent.name}_out"], bits[f"{parent.name}_out"] = q.alpha, q.bits
            elif isinstance(q, SignedQuantizer):
                if layer is not model.layers[-1]:
                    raise AdderFlowError(f"layer {layer.name}: a signed activation quantizer is only allowed on the output")
                outq = q
            else:
                raise AdderFlowError(f"layer {layer.name}: unsupported quantizer {q}")
    if inq is None:
        raise AdderFlowError(f"model {model.name}: no QATInput layer (the int8 network input)")
    if outq is None:
        raise AdderFlowError(f"model {model.name}: the last layer must be a QATActivation(SignedQuantizer) (the logits)")

    def clone(layer):
        if isinstance(layer, QATInput) or (isinstance(layer, QATActivation) and layer.quantizer is outq):
            return L.Dropout(0.0, name=layer.name)      # an identity keras_graph passes through
        if isinstance(layer, QATActivation):
            return L.ReLU(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    plain = tf.keras.models.clone_model(model, clone_function=clone)
    for layer in plain.layers:
        src = model.get_layer(layer.name)
        if src.weights:
            layer.set_weights(src.get_weights())
    return plain, alphas, inq, pre, outq, bits


def export_qnet(model) -> QNet:
    """The validated QNet of a QAT model's inference forward (BN folded; see the module docstring)."""
    from flow.qat.layers import QATAdderConv2D
    from flow.quant.keras_graph import from_keras
    from flow.quant.redistribution import QuantConfig, build_qnet

    plain, alphas, inq, pre, outq, bits = strip(model)
    for layer in model.layers:
        if isinstance(layer, QATAdderConv2D):
            kq, iq = layer.get_quantizers()
            if kq is None or iq is None:
                raise AdderFlowError(f"layer {layer.name}: an exported adder layer needs kernel and input quantizers")
    vals = list(bits.values())
    graph = from_keras(plain, preprocess=pre)
    first, last = _linear_bits(model, graph)
    common = max(set(vals), key=vals.count) if vals else 8
    cfg = QuantConfig(bits=common, method="redistribution+", alpha=1.0, range_clamp=True, bias_correction=False, bits_first=first, bits_last=last, input_bits=inq.bits,
                      output_bits=outq.bits, extra={"tensor_bits": bits})
    for fo in graph.ops:
        if fo.kind == "adder2d":
            layer = model.get_layer(fo.name)
            kq, t = layer.kernel_quantizer, fo.inputs[0]
            if t not in alphas or (alphas[t], bits[t]) != (kq.alpha, kq.bits):
                raise AdderFlowError(f"layer {fo.name}: its kernel grid ({kq.bits} bits, alpha {kq.alpha}) is not "
                                     f"the grid of its input activation")
    ranges = _ModelRanges(inq.scale, inq.bits, alphas, {graph.output: outq.scale}, outq.bits)
    net = build_qnet(graph, ranges, cfg)
    net.meta["qat"] = {"model": model.name}
    return net


def _linear_bits(model, graph) -> tuple[int, int]:
    """Weight widths of the first conv and the classifier, from their ChannelKernelQuantizers."""
    from flow.qat.quantizers import ChannelKernelQuantizer

    lin = [fo for fo in graph.ops if fo.kind in ("conv2d", "dense")]
    got = []
    for fo in lin:
        q = getattr(model.get_layer(fo.name), "kernel_quantizer_internal", None)
        if not isinstance(q, ChannelKernelQuantizer):
            raise AdderFlowError(f"layer {fo.name}: a conv/dense layer needs kernel_quantizer=ChannelKernelQuantizer")
        got.append(q.bits)
    first = next((q for fo, q in zip(lin, got) if fo.kind == "conv2d" and fo.inputs[0] == graph.input), 8)
    dense = [q for fo, q in zip(lin, got) if fo.kind == "dense"]
    last = dense[-1] if dense else 8
    mids = [q for fo, q in zip(lin, got) if not (fo.kind == "conv2d" and fo.inputs[0] == graph.input)][:-1] if dense else []
    if mids:
        raise AdderFlowError(f"model {model.name}: conv/dense layers other than the first and the classifier are "
                             "not supported by the export")
    return first, last


def integer_keras_model(model):
    """The bit-exact integer Keras model (`flow.qlayers`) of a QAT model's export: what
    `hls4ml.converters.convert_from_keras_model(..., backend='AdderVitis')` converts. (The backend's
    converter does not take the QAT model itself: its handlers are for the integer Q* layers.)"""
    from flow.qlayers import qnet_to_keras

    return qnet_to_keras(export_qnet(model))
