"""The quantization-aware ResNet-20: built on `flow.models`' topology with QAT layers, initialised from
a PTQ solution (the official checkpoint quantized with `adderflow quantize` defaults, or a QNet folder).

Initialisation from a QNet reproduces it: latent weights = the checkpoint's float weights (from a .pth)
or integer weights x their step (from a QNet folder; adder weights on the range's edges one HardTanh clip
outside it, see `_latent_adder_kernel`), activation ranges = the QNet tensors' ranges, and
each requant becomes the BatchNorm(s) in front of it realising the float affine a*y + b of the integer
requant (a = mult / 2^shift x out_scale / lsb of the input, b = bias / 2^shift x out_scale less the
range-clamp excess the float kernel already carries), with the moving statistics of its input measured
on calibration images (`_bn_weights`). BN layers compute in float64 so that exporting the untrained
model gives back the same multipliers (24-bit integers do not survive a float32 gamma).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flow.constants import BN_EPSILON
from flow.errors import AdderFlowError
from flow.layers.adder import DEFAULT_ETA
from flow.models import BN_MOMENTUM, RESNET20_INPUT_SHAPE, _Builder, resnet20_blocks
from flow.qnet import QNet, QNetError
from flow.quant.calibrate import CORRECTION_IMAGES

# BatchNorm input statistics at init come from this many calibration images (as bias correction)
STAT_IMAGES = CORRECTION_IMAGES


def _tf():
    import tensorflow as tf

    return tf


class _QATBuilder(_Builder):
    """flow.models' ResNet-20 with QAT layers; quantizer settings looked up by layer name."""

    def __init__(self, acts: dict, first_bits: int, last_bits: int, out_quant, adder_gradient, eta):
        super().__init__(_tf(), adder=True, adder_gradient=adder_gradient, eta=eta)
        self.acts, self.first_bits, self.last_bits, self.out_quant = acts, first_bits, last_bits, out_quant

    def conv(self, x, filters, kernel, stride, pad, name):
        from qkeras import QConv2D

        from flow.qat.quantizers import ChannelKernelQuantizer

        L = self.layers
        if pad:
            x = L.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        return QConv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                       kernel_quantizer=ChannelKernelQuantizer(self.first_bits), name=name)(x)

    def adder_or_conv(self, x, filters, kernel, stride, pad, name):
        from flow.qat.layers import QATAdderConv2D
        from flow.qat.quantizers import ActQuantizer, AdderKernelQuantizer

        bits, alpha = self.acts[x._keras_history.layer.name]
        return QATAdderConv2D(
            filters, kernel, strides=stride, padding=pad if pad else "valid", use_bias=False,
            kernel_initializer=self.tf.keras.initializers.RandomNormal(stddev=1.0),
            adder_gradient=self.adder_gradient, eta=self.eta, name=name,
            kernel_quantizer=AdderKernelQuantizer(bits, alpha), input_quantizer=ActQuantizer(bits, alpha))(x)

    def bn(self, x, name):
        return self.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, dtype="float64",
                                              name=name)(x)

    def relu(self, x, name):
        from flow.qat.layers import QATActivation
        from flow.qat.quantizers import ActQuantizer

        return QATActivation(ActQuantizer(*self.acts[name]), name=name)(x)

    def head(self, x, num_classes):
        from qkeras import QConv2D

        from flow.qat.layers import QATActivation
        from flow.qat.quantizers import ChannelKernelQuantizer

        L = self.layers
        x = L.GlobalAveragePooling2D(keepdims=True, name="avgpool")(x)
        x = QConv2D(num_classes, 1, use_bias=False, kernel_quantizer=ChannelKernelQuantizer(self.last_bits),
                    name="fc")(x)
        x = self.bn(x, "bn2")
        x = L.Flatten(name="flatten")(x)
        return QATActivation(self.out_quant, name="logits")(x)


# QNet op / tensor of each ResNet-20 quantizer: the requant whose output a ReLU layer quantizes.
def _relu_requants() -> dict:
    m = {"relu": "bn1"}
    for blk in resnet20_blocks():
        m[f"{blk.name}_relu1"] = f"{blk.name}_bn1"
        m[f"{blk.name}_relu2"] = f"{blk.name}_add"
    return m


def _adder_ops() -> dict:
    """Keras adder layer -> (QNet op names accepted: PTQ from the checkpoint / our export, Keras input relu)."""
    m, src = {}, "relu"
    for blk in resnet20_blocks():
        n = blk.name
        m[f"{n}_conv1"] = ((f"{n}_conv1",), src)
        m[f"{n}_conv2"] = ((f"{n}_conv2",), f"{n}_relu1")
        if blk.downsample:
            m[f"{n}_downsample_0"] = ((f"{n}_downsample", f"{n}_downsample_0"), src)
        src = f"{n}_relu2"
    return m


def _op(qnet: QNet, names, kind: str, where: str):
    for n in names:
        try:
            o = qnet.op(n)
        except KeyError:
            continue
        if o.kind != kind:
            raise AdderFlowError(f"{where}: op {n} is a {o.kind}, a ResNet-20 QNet has a {kind} there")
        return o
    raise AdderFlowError(f"{where}: not a ResNet-20 QNet (no op {' or '.join(names)})")


def resolve_bits(bits, qnet: QNet, where: str = "bits") -> dict:
    """{relu layer: bits} from one width, {adder layer name: bits} (plus '*' for the rest) or None
    (the QNet's own widths). A layer's bits are those of its input activation, so layers reading the
    same activation (a block's conv1 and downsample) must agree."""
    relus = _relu_requants()
    own = {r: int(qnet.tensors[qnet.op(op).output].bits) for r, op in relus.items()}
    if bits is None:
        return own
    if isinstance(bits, (int, np.integer)) and not isinstance(bits, bool):
        _check_width(bits, where)
        return {r: int(bits) for r in relus}
    if not isinstance(bits, dict):
        raise AdderFlowError(f"{where}: expected an integer or a {{layer: bits}} map, got {bits!r}")
    adders = _adder_ops()
    unknown = sorted(set(bits) - set(adders) - {"*"})
    if unknown:
        raise AdderFlowError(f"{where}: unknown adder layer '{unknown[0]}' (layers: {', '.join(adders)})")
    default = bits.get("*")
    if default is not None:
        _check_width(default, f"{where} '*'")
    out, by = {}, {}
    for layer, (_, relu) in adders.items():
        if layer not in bits:
            continue
        b = _check_width(bits[layer], f"{where} {layer}")
        if relu in out and out[relu] != b:
            raise AdderFlowError(f"{where}: {layer} ({b} bits) and {by[relu]} ({out[relu]} bits) read the same "
                                 "activation and must have the same width")
        out[relu], by[relu] = b, layer
    return {r: out.get(r, int(default) if default is not None else own[r]) for r in relus}


def _check_width(b, where) -> int:
    if not isinstance(b, (int, np.integer)) or isinstance(b, bool) or not 2 <= int(b) <= 8:
        raise AdderFlowError(f"{where}: bits must be an integer in 2..8, got {b!r}")
    return int(b)


def _linear_steps(kernel32: np.ndarray, bits: int) -> np.ndarray:
    """The steps the export will compute from this float32 kernel (`quantize_linear_weights`)."""
    from flow.quant.redistribution import quantize_linear_weights

    return quantize_linear_weights(kernel32.astype(np.float64), bits, False)[1]


def _adder_kernel(wq: np.ndarray, step: float, alpha: float) -> np.ndarray:
    """float32 kernel on the grid, never above alpha (float32 rounding up would be a range-clamp excess)."""
    k = (wq.astype(np.float64) * step).astype(np.float32)
    top = np.float32(alpha)
    while float(top) > alpha:
        top = np.nextafter(top, np.float32(0))
    # compare in float64: numpy would round a Python float to float32 against a float32 array
    return np.where(k.astype(np.float64) > alpha, top, k).astype(np.float32)


# The AdderNet X gradient is HardTanh(w - x) (flow.layers.adder): saturated, the exact +-1 of |x - w|, once
# w lies this far outside the activation range [0, alpha].
HARDTANH_CLIP = 1.0


def _latent_adder_kernel(wq: np.ndarray, bits: int, alpha: float) -> np.ndarray:
    """The latent float kernel of QNet adder integers (no float weights known): wq * step inside the range,
    and the edge integers (0 and 2^b - 1) HARDTANH_CLIP below 0 / above alpha.

    Why not the grid values there: most of a trained adder kernel lies outside [0, alpha] (the official
    ResNet-20: mean |w| 4.7, alpha 1.3-3), where the float network's X gradient is the saturated +-1;
    on the edge of the range it becomes -x or alpha - x instead. Measured on the official checkpoint at
    W4, that made the X gradient 1.5-2x larger per adder layer than the float network's, ~150x at the
    input, and the first conv's and the BatchNorms' gradients ~10^3x (so QAT from a QNet had to freeze
    them). Outside by one clip, the gradients are those of the checkpoint init. The forward is unchanged:
    the same integers, and the range-clamp excess this adds goes out of the BN's beta (the `excess` of
    `_bn_weights`) and back into the requant bias on export."""
    levels = (1 << int(bits)) - 1
    k = _adder_kernel(wq, alpha / levels, alpha)
    return np.where(wq <= 0, -HARDTANH_CLIP, np.where(wq >= levels, alpha + HARDTANH_CLIP, k)).astype(np.float32)


def _bn_weights(mult_row, bias, shift, out_scale, lsb, coeff, stats=None, excess=0.0):
    """gamma, beta, moving mean, moving variance of a BN whose inference affine a*y + b realises
    mult/2^shift (and bias) on its input y = coeff * lsb * acc (coeff -1 after an adder, 1/(H*W) after
    the pool). With the input's statistics (mean, var) the BN gets them as moving statistics and
    gamma = a sqrt(var + eps), beta = b + a mean: the same affine in inference, and a training-mode BN
    (batch statistics) starts from it too. Without, mean 0 and var 1 - eps."""
    p = float(1 << int(shift))
    a = np.asarray(mult_row, np.float64) / p * out_scale / (np.asarray(lsb, np.float64) * coeff)
    b = np.zeros_like(a) if bias is None else np.asarray(bias, np.float64) / p * out_scale
    # the QNet bias holds a * (range-clamp excess); with float kernels the adder output carries it
    b = b - a * coeff * np.asarray(excess, np.float64)
    if stats is None:
        return [a, b, np.zeros_like(a), np.full_like(a, 1.0 - BN_EPSILON)]
    mean, var = stats
    return [a * np.sqrt(var + BN_EPSILON), b + a * mean, mean, var]


def _acc_moments(qnet: QNet, tensors: list, images, batch: int = 32) -> dict:
    """{accumulator tensor: (mean, var) per channel} of the golden model on these images."""
    from flow import golden
    from flow.qnet import last_uses

    sums = {t: 0.0 for t in tensors}
    sq = {t: 0.0 for t in tensors}
    n = {t: 0 for t in tensors}
    want = set(tensors)
    last = last_uses(qnet.ops)
    for i in range(0, len(images), batch):
        env = {qnet.input: qnet.quantize_input(images[i:i + batch])}
        for j, o in enumerate(qnet.ops):
            env[o.output] = golden.run_op(qnet, o, env)
            if o.output in want:
                v = env[o.output].reshape(-1, env[o.output].shape[-1]).astype(np.float64)
                sums[o.output] = sums[o.output] + v.sum(0)
                sq[o.output] = sq[o.output] + (v * v).sum(0)
                n[o.output] += len(v)
            for t in o.inputs:
                if last[t] == j and t != qnet.output:
                    env.pop(t, None)
    out = {}
    for t in tensors:
        m = sums[t] / n[t]
        out[t] = (m, np.maximum(sq[t] / n[t] - m * m, 0.0))
    return out


def resnet20_from_qnet(qnet: QNet, bits=None, calib_images_uint8=None, adder_gradient: str = "addernet",
                       eta: float = DEFAULT_ETA, where: str = "qnet", float_kernels: dict | None = None):
    """The QAT ResNet-20 whose fake-quant forward is this QNet (see the module docstring).

    float_kernels: {Keras layer name: float HWIO kernel} the QNet was quantized from (the checkpoint's).
    They become the latent weights, so training starts from the float network's weights, gradients
    included: an adder kernel outside [0, alpha] gets the same integers and its exact range-clamp
    excess, which then stays out of beta. Without them (a QNet folder) the adder kernels come from the
    integers (`_latent_adder_kernel`), which gives the same gradients as the checkpoint's."""
    float_kernels = dict(float_kernels or {})
    tf = _tf()
    if tuple(qnet.tensors[qnet.input].shape) != RESNET20_INPUT_SHAPE:
        raise AdderFlowError(f"{where}: input shape {tuple(qnet.tensors[qnet.input].shape)} is not ResNet-20's "
                             f"{RESNET20_INPUT_SHAPE}")
    widths = resolve_bits(bits, qnet)
    relus = _relu_requants()
    acts = {}
    for relu, rq in relus.items():
        spec = qnet.tensors[_op(qnet, (rq,), "requant", where).output]
        if spec.signed:
            raise AdderFlowError(f"{where}: tensor {spec.name} must be an unsigned activation")
        acts[relu] = (widths[relu], float(spec.scale * spec.hi))        # alpha = A of the QNet tensor
    conv1 = _op(qnet, ("conv1",), "conv2d", where)
    fc = _op(qnet, ("fc",), "dense", where)
    for o in (conv1, fc):
        if o.attrs.get("apot_terms"):
            raise AdderFlowError(f"{where}: op {o.name} has APoT weights; QAT supports plain integer weights there")
    for o in qnet.ops:
        if o.kind == "requant" and o.attrs.get("apot_terms"):
            raise AdderFlowError(f"{where}: op {o.name} has APoT requant multipliers; QAT exports plain ones")
    logits = qnet.output_spec
    from flow.qat.layers import QATInput
    from flow.qat.quantizers import SignedQuantizer

    in_spec = qnet.tensors[qnet.input]
    iq = qnet.input_quant
    builder = _QATBuilder(acts, int(conv1.attrs["bits"]), int(fc.attrs["bits"]),
                          SignedQuantizer(logits.bits, float(logits.scale)), adder_gradient, eta)
    inputs = tf.keras.Input(shape=RESNET20_INPUT_SHAPE, name="input")
    x = QATInput(iq.get("mean", [0.0]), iq.get("std", [1.0]), SignedQuantizer(in_spec.bits, float(iq["scale"])),
                 name="input_quant")(inputs)
    model = tf.keras.Model(inputs, builder.resnet20(x, int(logits.shape[-1])), name="resnet20_qat")

    # ---- weights -------------------------------------------------------------------------------------
    s_in = float(iq["scale"])
    k1 = (conv1.arrays["weight"] * np.asarray(conv1.attrs["weight_scales"])).astype(np.float32)
    if "conv1" in float_kernels:   # same per-channel integers and steps (quantize_linear_weights)
        k1 = np.asarray(float_kernels["conv1"], np.float32)
    model.get_layer("conv1").set_weights([k1])
    bns = []   # (BN layer, requant op, input index, lsb of the input, coeff, carries the bias)
    bns.append(("bn1", qnet.op("bn1"), 0, s_in * _linear_steps(k1, int(conv1.attrs["bits"])), 1.0, True, 0.0))
    steps, excess = {}, {}
    for layer, (names, relu) in _adder_ops().items():
        o = _op(qnet, names, "adder2d", where)
        if o.attrs.get("method", "redistribution+") != "redistribution+" or o.attrs.get("weight_signed"):
            raise AdderFlowError(f"{where}: op {o.name} uses method '{o.attrs.get('method')}'; QAT trains the "
                                 "redistribution+ grid (quantize with --method redistribution+)")
        if np.any(o.arrays["group_in_mult"] != 0) or np.any(o.arrays["group_of_channel"] != 0):
            raise AdderFlowError(f"{where}: op {o.name} has per-group input rescales; QAT uses one group per layer")
        spec = qnet.tensors[o.inputs[0]]
        alpha = float(spec.scale * spec.hi)
        kl = model.get_layer(layer)
        if layer in float_kernels:
            k = np.asarray(float_kernels[layer], np.float32)
            if not np.array_equal(kl.kernel_quantizer.integers(k), o.arrays["weight"]) and kl.kernel_quantizer.bits == spec.bits:
                raise AdderFlowError(f"{where}: float kernel of {layer} does not give the QNet's integers")
        else:
            k = _latent_adder_kernel(o.arrays["weight"], spec.bits, alpha)
        kl.set_weights([k])
        excess[layer] = kl.kernel_quantizer.excess(k)
        steps[layer] = kl.kernel_quantizer.step
    for blk in resnet20_blocks():
        n = blk.name
        bns.append((f"{n}_bn1", qnet.op(f"{n}_bn1"), 0, steps[f"{n}_conv1"], -1.0, True, excess[f"{n}_conv1"]))
        bns.append((f"{n}_bn2", qnet.op(f"{n}_add"), 0, steps[f"{n}_conv2"], -1.0, True, excess[f"{n}_conv2"]))
        if blk.downsample:
            bns.append((f"{n}_downsample_1", qnet.op(f"{n}_add"), 1, steps[f"{n}_downsample_0"], -1.0, False,
                        excess[f"{n}_downsample_0"]))
    kf = (fc.arrays["weight"] * np.asarray(fc.attrs["weight_scales"])).astype(np.float32)
    kf = kf.reshape(1, 1, *kf.shape)
    if "fc" in float_kernels:
        kf = np.asarray(float_kernels["fc"], np.float32).reshape(kf.shape)
    model.get_layer("fc").set_weights([kf])
    pool_in = qnet.tensors[_op(qnet, ("avgpool",), "global_sum_pool", where).inputs[0]]
    hw = int(np.prod(pool_in.shape[:2]))
    bns.append(("bn2", qnet.op("bn2"), 0, pool_in.scale * _linear_steps(kf, int(fc.attrs["bits"])), 1.0 / hw, True, 0.0))
    moments = None
    if calib_images_uint8 is not None:
        images = np.asarray(calib_images_uint8)[:STAT_IMAGES]
        moments = _acc_moments(qnet, [rq.inputs[k] for _, rq, k, _, _, _, _ in bns], images)
    for name, rq, k, lsb, coeff, with_bias, off in bns:
        st = None
        if moments is not None:
            m, v = moments[rq.inputs[k]]
            scale = coeff * np.asarray(lsb, np.float64)          # y = coeff * lsb * acc
            st = (m * scale + coeff * off, v * scale * scale)     # y = coeff * (lsb * acc + excess)
        model.get_layer(name).set_weights(_bn_weights(rq.arrays["mult"][k], rq.arrays["bias"] if with_bias else None,
                                                      rq.attrs["shift"], qnet.tensors[rq.output].scale, lsb, coeff, st,
                                                      off))
    return model


def init_model(init, bits=4, calib_images_uint8=None, **quant_options):
    """The QAT ResNet-20, ready to train with plain TF (GradientTape or model.fit).

    init: the official checkpoint (.pth/.pt: quantized first with `adderflow quantize` defaults on
      `calib_images_uint8`, pass what `adderflow quantize --calib` would get, 512 train images by default;
      `quant_options` are `flow.quant.QuantConfig` fields) or a QNet folder (qnet.json + qnet.npz) or
      QNet object. `calib_images_uint8` (uint8 NHWC) also give every BatchNorm the statistics of its
      input (golden model, first STAT_IMAGES images), so that training-mode BN (batch statistics)
      starts where the PTQ solution is; without them (QNet only) BN is a pure affine (mean 0,
      var 1 - eps): the inference forward is the same, but training mode would re-normalise it.
    bits: one width for every adder layer and its input activation, or {adder layer name: bits} with an
      optional '*' for the others (e.g. {'*': 3, 'layer1_0_conv1': 4}); None keeps a QNet's own widths.
      From a checkpoint the PTQ runs at the '*' width (else the most common one); the others are then
      re-gridded by the quantizers. First conv and classifier keep `bits_first`/`bits_last` (8).

    The model takes the images as float32 pixel values 0..255, NHWC (32, 32, 3): feed
    `x_uint8.astype("float32")` (augment on the uint8 images); its first layer (`input_quant`) divides by
    255, normalises with the CIFAR-10 mean/std and quantizes to int8 exactly as the QNet does. It outputs
    logits (no softmax): train with SparseCategoricalCrossentropy(from_logits=True). At initialisation its
    inference forward is the PTQ QNet's (same integers); `export_qnet(model)` gives the trained QNet.

    Call it with training=True for gradients (model.fit does): the inference forward (training falsy,
    model.predict / evaluate) is computed from the integer SADs, equals the golden model's integers and
    carries no gradient. The adder kernels' gradients are rescaled per layer to an RMS of eta (AdderNet)
    whatever the loss, so each adder weight moves by about lr * eta per SGD step: fine-tuning wants a
    small lr (measured: 5 SGD steps at lr 0.005, momentum 0.9, batch 64 take the train-mode loss of the
    official W4 init from 0.060 to 0.010).
    """
    if isinstance(init, QNet):
        return resnet20_from_qnet(init, bits, calib_images_uint8)
    p = Path(init)
    if p.is_dir():
        from flow.qnet import load

        try:
            qnet = load(p)
        except (QNetError, ValueError, OSError) as exc:
            raise AdderFlowError(f"{p}: cannot read the QNet ({exc})") from None
        return resnet20_from_qnet(qnet, bits, calib_images_uint8, where=str(p))
    from flow.importer import PYTORCH_SUFFIXES

    if not p.is_file():
        raise AdderFlowError(f"{p}: no such checkpoint or QNet folder")
    if p.suffix.lower() not in PYTORCH_SUFFIXES:
        raise AdderFlowError(f"{p}: init must be the official .pth/.pt checkpoint or a QNet folder")
    if calib_images_uint8 is None:
        raise AdderFlowError(f"{p}: initialising from a checkpoint needs calibration images (PTQ runs first)")
    from flow.quant.api import load_graph, quantize

    graph = load_graph("resnet20", p)
    floats = {"conv1": graph.op("conv1").arrays["weight"],
              "fc": graph.op("fc").arrays["weight"]}
    for layer, (names, _) in _adder_ops().items():
        floats[layer] = graph.op(names[0]).arrays["weight"]
    qnet = quantize("resnet20", graph, np.asarray(calib_images_uint8), bits=_ptq_bits(bits), **quant_options)
    return resnet20_from_qnet(qnet, bits, calib_images_uint8, where=str(p), float_kernels=floats)


def _ptq_bits(bits) -> int:
    if bits is None:
        return 4
    if isinstance(bits, dict):
        if "*" in bits:
            return _check_width(bits["*"], "bits '*'")
        vals = [_check_width(v, f"bits {k}") for k, v in bits.items()]
        if not vals:
            raise AdderFlowError("bits: an empty per-layer map (give '*' or layer widths)")
        return max(set(vals), key=vals.count)
    return _check_width(bits, "bits")
