"""Numeric facts of the official AdderNet ResNet-20 that independent implementations share.

Here, not in `flow.models`, so the numpy reference (`flow.reference`), which must not import the Keras
model it checks, reads the same value. The CIFAR-10 normalisation lives with the data
(`flow.data.CIFAR_MEAN`, `flow.data.CIFAR_STD`).
"""

BN_EPSILON = 1e-5   # PyTorch BatchNorm2d's default, which the official checkpoint was trained with
