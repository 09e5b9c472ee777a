"""Keras layers of AdderFlow (import TensorFlow): the float `AdderConv2D`."""

from flow.layers.adder import ADDER_GRADIENTS, AdderConv2D

__all__ = ["ADDER_GRADIENTS", "AdderConv2D"]
