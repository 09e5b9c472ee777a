"""Post-training quantization of adder networks into the integer QNet (see flow.qnet)."""

from flow.quant.redistribution import DEFAULT_METHOD, METHODS, QuantConfig, build_qnet  # noqa: F401
