"""Model zoo: the official AdderNet ResNet-20 for CIFAR-10, its CNN twin, and a small adder net.

Layer names follow the PyTorch module names of the official code with '.' written as '_'
(`layer2.0.downsample.0` -> `layer2_0_downsample_0`), so `flow.importer` maps checkpoint keys by name.
BatchNorm uses PyTorch's epsilon (`flow.constants.BN_EPSILON`) and momentum 0.1 (Keras momentum 0.9).
The ResNet-20 topology is defined here once (`resnet20_blocks`); see the comment above it.
"""

from __future__ import annotations

from dataclasses import dataclass

from flow.constants import BN_EPSILON
from flow.errors import AdderFlowError

MODELS = {
    "resnet20": "official AdderNet ResNet-20 for CIFAR-10 (adder 3x3 blocks, 1x1 adder shortcuts)",
    "resnet20_cnn": "the same ResNet-20 with regular convolutions (the CNN twin)",
    "adder_small": "small adder net (conv + 2 adder layers) for quick tests and sklearn digits",
}

RESNET20_INPUT_SHAPE = (32, 32, 3)
DEFAULT_INPUT_SHAPES = {"resnet20": RESNET20_INPUT_SHAPE, "resnet20_cnn": RESNET20_INPUT_SHAPE, "adder_small": (8, 8, 1)}

BN_MOMENTUM = 0.9

# The ResNet-20 topology, once: every other ResNet-20 in the flow (the float graph of a state dict, the
# seeded QNets, the QKeras twin) walks `resnet20_blocks()`. Only `flow.reference` re-implements it, on
# purpose: it is the independent oracle the Keras import is checked against.
RESNET20_STEM = 16                                  # conv1: 3x3, 3 -> 16
RESNET20_STAGES = ((16, 1), (32, 2), (64, 2))       # (planes, stride of the stage's first block)
RESNET20_BLOCKS_PER_STAGE = 3


@dataclass(frozen=True)
class Block:
    """One basic block: 3x3 conv1 (stride) -> BN -> ReLU -> 3x3 conv2 -> BN, plus the shortcut (a 1x1
    strided conv + BN where the shape changes, else identity), added, then ReLU."""
    stage: int      # 1..3
    index: int      # 0..2 within the stage
    cin: int
    planes: int
    stride: int

    @property
    def name(self) -> str:
        """Keras layer prefix, `layer2_0`."""
        return f"layer{self.stage}_{self.index}"

    @property
    def torch_name(self) -> str:
        """The PyTorch module, `layer2.0` (checkpoint keys)."""
        return f"layer{self.stage}.{self.index}"

    @property
    def downsample(self) -> bool:
        return self.stride != 1 or self.cin != self.planes


def resnet20_blocks() -> list:
    """The nine basic blocks of ResNet-20, in execution order."""
    blocks, cin = [], RESNET20_STEM
    for stage, (planes, stride) in enumerate(RESNET20_STAGES, start=1):
        for i in range(RESNET20_BLOCKS_PER_STAGE):
            blocks.append(Block(stage, i, cin, planes, stride if i == 0 else 1))
            cin = planes
    return blocks


def build_model(name: str, input_shape=None, num_classes: int = 10, adder_gradient: str = "addernet", eta: float = 0.2):
    """A fresh (randomly initialised) Keras model by name; logits out (no softmax)."""
    if name not in MODELS:
        raise AdderFlowError(f"unknown model '{name}' (choose from {', '.join(MODELS)})")
    import tensorflow as tf

    shape = tuple(input_shape) if input_shape is not None else DEFAULT_INPUT_SHAPES[name]
    if len(shape) != 3:
        raise AdderFlowError(f"input_shape must be (H, W, C), got {shape}")
    builder = _Builder(tf, adder=(name != "resnet20_cnn"), adder_gradient=adder_gradient, eta=eta)
    inputs = tf.keras.Input(shape=shape, name="input")
    if name in ("resnet20", "resnet20_cnn"):
        outputs = builder.resnet20(inputs, num_classes)
    else:
        outputs = builder.adder_small(inputs, num_classes)
    return tf.keras.Model(inputs, outputs, name=name)


def is_adder_layer(layer) -> bool:
    from flow.layers.adder import AdderConv2D

    return isinstance(layer, AdderConv2D)


def custom_objects() -> dict:
    """Classes `keras.models.load_model` needs (they are also registered as 'adderflow>...')."""
    from flow.layers.adder import AdderConv2D

    return {"AdderConv2D": AdderConv2D}


class _Builder:
    def __init__(self, tf, adder: bool, adder_gradient: str, eta: float):
        self.tf = tf
        self.layers = tf.keras.layers
        self.adder = adder
        self.adder_gradient = adder_gradient
        self.eta = eta

    def conv(self, x, filters, kernel, stride, pad, name):
        """Regular convolution with PyTorch's symmetric padding (no bias)."""
        L = self.layers
        if pad:
            x = L.ZeroPadding2D(pad, name=f"{name}_pad")(x)
        return L.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                        kernel_initializer="he_normal", name=name)(x)

    def adder_or_conv(self, x, filters, kernel, stride, pad, name):
        if not self.adder:
            return self.conv(x, filters, kernel, stride, pad, name)
        from flow.layers.adder import AdderConv2D

        return AdderConv2D(
            filters, kernel, strides=stride, padding=pad if pad else "valid", use_bias=False,
            kernel_initializer=self.tf.keras.initializers.RandomNormal(stddev=1.0),  # official: N(0, 1)
            adder_gradient=self.adder_gradient, eta=self.eta, name=name,
        )(x)

    def bn(self, x, name):
        return self.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)(x)

    def relu(self, x, name):
        return self.layers.ReLU(name=name)(x)

    def basic_block(self, x, blk: Block):
        name, planes, stride = blk.name, blk.planes, blk.stride
        out = self.adder_or_conv(x, planes, 3, stride, 1, f"{name}_conv1")
        out = self.relu(self.bn(out, f"{name}_bn1"), f"{name}_relu1")
        out = self.adder_or_conv(out, planes, 3, 1, 1, f"{name}_conv2")
        out = self.bn(out, f"{name}_bn2")
        if blk.downsample:
            shortcut = self.adder_or_conv(x, planes, 1, stride, 0, f"{name}_downsample_0")
            shortcut = self.bn(shortcut, f"{name}_downsample_1")
        else:
            shortcut = x
        out = self.layers.Add(name=f"{name}_add")([out, shortcut])
        return self.relu(out, f"{name}_relu2")

    def head(self, x, num_classes):
        L = self.layers
        x = L.GlobalAveragePooling2D(keepdims=True, name="avgpool")(x)
        x = L.Conv2D(num_classes, 1, use_bias=False, kernel_initializer="he_normal", name="fc")(x)
        x = self.bn(x, "bn2")
        return L.Flatten(name="logits")(x)

    def resnet20(self, inputs, num_classes):
        x = self.conv(inputs, RESNET20_STEM, 3, 1, 1, "conv1")
        x = self.relu(self.bn(x, "bn1"), "relu")
        for blk in resnet20_blocks():
            x = self.basic_block(x, blk)
        return self.head(x, num_classes)

    def adder_small(self, inputs, num_classes):
        x = self.conv(inputs, 16, 3, 1, 1, "conv1")
        x = self.relu(self.bn(x, "bn1"), "relu")
        x = self.adder_or_conv(x, 32, 3, 1, 1, "layer1_0_conv1")
        x = self.relu(self.bn(x, "layer1_0_bn1"), "layer1_0_relu1")
        x = self.adder_or_conv(x, 64, 3, 2, 1, "layer1_0_conv2")
        x = self.relu(self.bn(x, "layer1_0_bn2"), "layer1_0_relu2")
        return self.head(x, num_classes)


def predict_logits(model, x_float, batch_size: int = 100, progress: bool = False, desc: str = "eval"):
    """Logits of a Keras model over float inputs in batches (inference mode), with an optional tqdm bar."""
    import numpy as np
    from tqdm import tqdm

    if batch_size <= 0:
        raise AdderFlowError(f"batch size must be positive, got {batch_size}")
    expected = tuple(model.input_shape[1:])
    if tuple(x_float.shape[1:]) != expected:
        raise AdderFlowError(f"model {model.name} takes inputs of shape {expected}, data has {tuple(x_float.shape[1:])}")
    outs = []
    starts = range(0, len(x_float), batch_size)
    for i in tqdm(starts, desc=desc, unit="batch", disable=not progress, leave=False):
        # predict_on_batch reuses the model's own compiled predict function (no retracing per call)
        outs.append(np.asarray(model.predict_on_batch(x_float[i:i + batch_size])))
    return np.concatenate(outs) if outs else np.zeros((0, model.output_shape[-1]), np.float32)
