"""PyTorch AdderNet state dict -> Keras model (no PyTorch needed), and weights from any supported file.

Keras layer names are the PyTorch module names with '.' as '_' (see `flow.models`), so each layer's
tensors are found by name: conv `<name>.weight` and adder `<name>.adder` (OIHW -> HWIO), adder bias
`<name>.b`, BatchNorm `weight/bias/running_mean/running_var`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError

PYTORCH_SUFFIXES = (".pth", ".pt", ".tar", ".ckpt", ".bin")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
_IGNORED_KEY_SUFFIXES = (".num_batches_tracked",)


def torch_name(keras_layer_name: str) -> str:
    """`layer2_0_downsample_0` -> `layer2.0.downsample.0`."""
    return keras_layer_name.replace("_", ".")


def oihw_to_hwio(w: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(w, (2, 3, 1, 0)))


def _layer_tensors(layer) -> list[tuple[str, str, object]] | None:
    """[(checkpoint key, layout, keras variable)] for one layer, or None if it has no weights."""
    import tensorflow as tf

    from flow.layers.adder import AdderConv2D

    base = torch_name(layer.name)
    if isinstance(layer, AdderConv2D):
        items = [(f"{base}.adder", "oihw", layer.kernel)]
        if layer.use_bias:
            items.append((f"{base}.b", "vector", layer.bias))
        return items
    if isinstance(layer, tf.keras.layers.Conv2D) and not isinstance(layer, tf.keras.layers.DepthwiseConv2D):
        items = [(f"{base}.weight", "oihw", layer.kernel)]
        if layer.use_bias:
            items.append((f"{base}.bias", "vector", layer.bias))
        return items
    if isinstance(layer, tf.keras.layers.Dense):
        items = [(f"{base}.weight", "oi", layer.kernel)]
        if layer.use_bias:
            items.append((f"{base}.bias", "vector", layer.bias))
        return items
    if isinstance(layer, tf.keras.layers.BatchNormalization):
        return [
            (f"{base}.weight", "vector", layer.gamma),
            (f"{base}.bias", "vector", layer.beta),
            (f"{base}.running_mean", "vector", layer.moving_mean),
            (f"{base}.running_var", "vector", layer.moving_variance),
        ]
    if layer.weights:
        raise AdderFlowError(f"layer {layer.name} ({type(layer).__name__}) has weights the importer cannot map")
    return None


def assign_state_dict(model, state_dict: dict, source: str = "checkpoint") -> None:
    """Copy every tensor of `state_dict` into `model`; any missing, extra or mis-shaped tensor is an error."""
    from flow.checkpoint import check_weight_values, strip_module_prefix
    from flow.models import is_adder_layer

    sd = strip_module_prefix(state_dict)
    # A state dict may come from memory, not only from flow.checkpoint: NaN or 1e30 weights import
    # "fine" and only show up as garbage logits or a useless quantization scale much later.
    check_weight_values(sd, source)
    if any(is_adder_layer(l) for l in model.layers) and not any(k.endswith(".adder") for k in sd):
        raise AdderFlowError(
            f"{source}: not an AdderNet checkpoint (no '.adder' weights among {len(sd)} tensors; "
            f"model {model.name} has adder layers)"
        )
    used, missing, assignments = set(), [], []
    for layer in model.layers:
        for key, layout, var in _layer_tensors(layer) or []:
            if key not in sd:
                missing.append(f"{key} (layer {layer.name})")
                continue
            arr = np.asarray(sd[key])
            converted = oihw_to_hwio(arr) if layout == "oihw" and arr.ndim == 4 else (arr.T if layout == "oi" and arr.ndim == 2 else arr)
            expected = tuple(var.shape)
            if converted.shape != expected:
                shown = f"{tuple(arr.shape)} (OIHW, {converted.shape} as HWIO)" if layout == "oihw" else f"{tuple(arr.shape)}"
                raise AdderFlowError(
                    f"{source}: shape mismatch for layer {layer.name}: checkpoint {key} is {shown}, "
                    f"model expects {expected}"
                )
            assignments.append((var, converted.astype(np.float32)))
            used.add(key)
    if missing:
        raise AdderFlowError(
            f"{source}: missing {len(missing)} tensor(s) for model {model.name}: {', '.join(missing[:4])}"
            + (" ..." if len(missing) > 4 else "")
        )
    extra = sorted(k for k in sd if k not in used and not k.endswith(_IGNORED_KEY_SUFFIXES))
    if extra:
        raise AdderFlowError(
            f"{source}: {len(extra)} tensor(s) do not belong to model {model.name}: {', '.join(extra[:4])}"
            + (" ..." if len(extra) > 4 else "")
        )
    for var, value in assignments:
        var.assign(value)


def keras_from_state_dict(state_dict: dict, model_name: str, source: str = "checkpoint"):
    """A Keras model `model_name` (see flow.models) holding the checkpoint's weights."""
    from flow.models import build_model

    if not isinstance(state_dict, dict) or not state_dict:
        raise AdderFlowError(f"{source}: empty or invalid state dict")
    model = build_model(model_name)
    assign_state_dict(model, state_dict, source)
    return model


def load_keras_model(path, model_name: str | None = None):
    """A saved Keras model (.keras or .h5). With `model_name`, an .h5 of weights only is also accepted."""
    import tensorflow as tf

    from flow.models import MODELS, build_model, custom_objects

    path = Path(path)
    if not path.is_file():
        raise AdderFlowError(f"{path}: weights file not found")
    try:
        model = tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)
    except AdderFlowError:
        raise
    except Exception as first:  # Keras raises many types for a bad file; all mean "cannot load"
        if model_name is None or path.suffix == ".keras":
            raise AdderFlowError(f"{path}: cannot load Keras model ({type(first).__name__}: {_one_line(first)})") from None
        model = build_model(model_name)
        try:
            model.load_weights(path)
        except Exception as exc:
            raise AdderFlowError(f"{path}: neither a saved model nor weights of {model_name} ({_one_line(exc)})") from None
    if model_name is not None and model_name in MODELS and model.name != model_name:
        raise AdderFlowError(f"{path}: holds model '{model.name}', not '{model_name}'")
    return model


def load_weights_any(model_name: str | None, path):
    """Model with weights from a PyTorch checkpoint (via flow.checkpoint, no torch) or a Keras file."""
    from flow.checkpoint import load_state_dict

    path = Path(path)
    if not path.exists():
        raise AdderFlowError(f"{path}: weights file not found")
    if path.suffix.lower() in KERAS_SUFFIXES:
        return load_keras_model(path, model_name)
    if path.suffix.lower() in PYTORCH_SUFFIXES:
        if model_name is None:
            raise AdderFlowError(f"{path}: a PyTorch checkpoint needs --model to say which network it holds")
        return keras_from_state_dict(load_state_dict(path), model_name, source=str(path))
    raise AdderFlowError(f"{path}: unknown weights format '{path.suffix}' (use .pth/.pt or .keras/.h5)")


def _one_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
