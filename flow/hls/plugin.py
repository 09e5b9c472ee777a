"""hls4ml backend plugin entry point (`[project.entry-points."hls4ml.backends"] AdderVitis`)."""

from __future__ import annotations

import sys

_KERAS_V2 = "hls4ml.converters.keras_v2_to_hls"


def register(register_backend, register_writer):
    """Register IR layers, the writer, the AdderVitis backend and the Keras-2 handlers with hls4ml."""
    from hls4ml.model.layers import register_layer

    from flow.hls.backend import BACKEND_NAME, AdderVitisBackend
    from flow.hls.layers import IR_LAYERS
    from flow.hls.writer import AdderVitisWriter

    for name, cls in IR_LAYERS.items():
        register_layer(name, cls)
    register_writer(BACKEND_NAME, AdderVitisWriter)
    register_backend(BACKEND_NAME, AdderVitisBackend)
    if not register_keras_handlers():
        # hls4ml loads plugins while its Keras converter module is still importing: finish on the next import
        sys.meta_path.insert(0, _DeferredHandlers())


def register_keras_handlers() -> bool:
    """Register our Keras-2 layer handlers; False while hls4ml's converter module is not fully imported."""
    mod = sys.modules.get(_KERAS_V2)
    if mod is None or not hasattr(mod, "layer_handlers") or not hasattr(mod, "register_keras_v2_layer_handler"):
        return False
    from flow.hls.layers import HANDLERS

    for name, handler in HANDLERS.items():
        for cname in (name, f"adderflow>{name}"):  # Keras writes registered classes as 'package>Name'
            if cname not in mod.layer_handlers:
                mod.register_keras_v2_layer_handler(cname, handler)
    return True


class _DeferredHandlers:
    """A meta-path hook that never finds modules; it registers the handlers once hls4ml can take them."""

    def find_spec(self, fullname, path=None, target=None):
        if register_keras_handlers():
            try:
                sys.meta_path.remove(self)
            except ValueError:
                pass
        return None
