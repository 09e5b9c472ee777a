"""Python entry points: load a float model as a graph, calibrate (cached), build the QNet."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError
from flow.quant.calibrate import ALPHAS, calibrate, calibrate_cached
from flow.quant.graph import FloatGraph, from_resnet20_state_dict
from flow.quant.redistribution import DEFAULT_METHOD, QuantConfig, build_qnet

SEED_WEIGHTS = 0


def load_graph(model_name: str, weights=None) -> FloatGraph:
    """Float graph from a .pth/.pt state dict (resnet20 family, no torch needed), a Keras file, a
    Keras model object, a state dict, or (weights=None) a seeded random Keras model of `model_name`."""
    from flow.models import MODELS

    if model_name is not None and model_name not in MODELS:
        raise AdderFlowError(f"unknown model '{model_name}' (choose from {', '.join(MODELS)})")
    if isinstance(weights, dict):
        return _from_state_dict(model_name, weights, "state dict")
    if weights is None:
        from flow.models import build_model
        import tensorflow as tf

        tf.keras.utils.set_random_seed(SEED_WEIGHTS)
        return graph_from_keras(build_model(model_name))
    if hasattr(weights, "layers"):
        return graph_from_keras(weights)
    from flow.importer import KERAS_SUFFIXES, PYTORCH_SUFFIXES, load_keras_model

    p = Path(weights)
    if not p.is_file():
        raise AdderFlowError(f"{p}: weights file not found")
    if p.suffix.lower() in PYTORCH_SUFFIXES:
        from flow.checkpoint import load_state_dict

        return _from_state_dict(model_name, load_state_dict(p), str(p))
    if p.suffix.lower() in KERAS_SUFFIXES:
        return graph_from_keras(load_keras_model(p, model_name))
    raise AdderFlowError(f"{p}: unknown weights format '{p.suffix}' (use .pth/.pt or .keras/.h5)")


def _from_state_dict(model_name, sd, source) -> FloatGraph:
    if model_name in ("resnet20", "resnet20_cnn", None):
        try:
            return from_resnet20_state_dict(sd)
        except KeyError as exc:
            raise AdderFlowError(f"{source}: missing tensor {exc.args[0]} for {model_name or 'resnet20'}") from None
    from flow.importer import keras_from_state_dict

    return graph_from_keras(keras_from_state_dict(sd, model_name, source))


def graph_from_keras(model) -> FloatGraph:
    from flow.quant.keras_graph import from_keras

    return from_keras(model)


def quantize(model_name, weights, calib_images_uint8, bits: int = 4, groups: int = 4, alpha=None,
             method: str = DEFAULT_METHOD, progress: bool = False, cache: bool = True, **options):
    """uint8 calibration images + a float model -> a validated integer QNet.

    `weights`: path (.pth/.keras), state dict, Keras model, or None (seeded random weights).
    Options are `QuantConfig` fields: range_clamp, bias_correction, bn_reestimation, bits_first,
    bits_last, apot_first, apot_last, apot_requant, output_bits.
    """
    graph = weights if isinstance(weights, FloatGraph) else load_graph(model_name, weights)
    if weights is None:
        # seeded random weights: give BatchNorm the statistics of the calibration data so activations live
        from flow.quant.calibrate import check_images
        from flow.quant.graph import recalibrate_bn

        recalibrate_bn(graph, check_images(calib_images_uint8, graph)[:256])
    cfg = QuantConfig(bits=bits, groups=groups, alpha=alpha, method=method, **options)
    cfg.check()
    return quantize_graph(graph, calib_images_uint8, cfg, progress=progress, cache=cache)


def quantize_keras(model, calib_images_uint8, **kwargs):
    """A QNet from a float Keras model (flow.models layer vocabulary)."""
    return quantize(None, graph_from_keras(model), calib_images_uint8, **kwargs)


def quantize_graph(graph: FloatGraph, images, cfg: QuantConfig, progress: bool = False, cache: bool = True):
    cfg.check()
    alphas = set(ALPHAS)
    for a in (cfg.alpha.values() if isinstance(cfg.alpha, dict) else [cfg.alpha]):
        if isinstance(a, float) or isinstance(a, int):
            alphas.add(float(a))
    stats = (calibrate_cached if cache else calibrate)(graph, images, tuple(alphas), progress=progress)
    return build_qnet(graph, stats, cfg, calib_images=np.asarray(images), progress=progress)
