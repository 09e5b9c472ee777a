"""The AdderVitis hls4ml backend: Vitis HLS with AdderFlow's integer stream layers (io_stream)."""

from __future__ import annotations

from hls4ml.backends import VitisBackend, VivadoBackend
from hls4ml.model.flow import get_flow, register_flow

from flow.hls.templates import TEMPLATES

BACKEND_NAME = "AdderVitis"


class AdderVitisBackend(VitisBackend):
    def __init__(self):
        super(VivadoBackend, self).__init__(name=BACKEND_NAME)  # as VitisBackend does, under our name
        self._register_layer_attributes()
        for t in TEMPLATES:
            self.register_template(t)
        self._register_flows()

    def _register_flows(self):
        n = self.name.lower()
        adder_init = register_flow("adder_init", [f"{n}:set_input_precision", f"{n}:fuse_requant"], requires=["vivado:init_layers"],
                                   backend=self.name)
        adder_opt = register_flow("adder_optimize", [f"{n}:shift_add_constants", f"{n}:count_multipliers"],
                                  requires=[adder_init], backend=self.name)
        template_flow = register_flow("apply_templates", self._get_layer_templates, requires=["vivado:init_layers"],
                                      backend=self.name)
        writer_passes = ["make_stamp", f"{n}:write_hls"]
        self._writer_flow = register_flow("write", writer_passes, requires=[f"{n}:ip"], backend=self.name)

        requires = get_flow("vitis:ip").requires.copy()
        requires.insert(requires.index("vivado:init_layers") + 1, adder_init)
        requires.insert(requires.index("vivado:specific_types"), adder_opt)
        requires.insert(requires.index("vitis:apply_templates") + 1, template_flow)
        self._default_flow = register_flow("ip", None, requires=requires, backend=self.name)

    def create_initial_config(self, part="xc7z020clg400-1", clock_period=10, io_type="io_stream", **kwargs):
        """Vitis defaults, except io_stream and the PYNQ-Z2 part at 100 MHz."""
        return super().create_initial_config(part=part, clock_period=clock_period, io_type=io_type, **kwargs)
