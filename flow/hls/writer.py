"""Vitis writer that also copies AdderFlow's C++ layer library into the project's firmware/nnet_utils."""

from __future__ import annotations

import shutil
from pathlib import Path

from hls4ml.writer.vitis_writer import VitisWriter

from flow.paths import hls_templates_dir


def templates_dir() -> Path:
    d = hls_templates_dir()
    if not (d / "nnet_adder_stream.h").is_file():
        raise FileNotFoundError(f"{d}/nnet_adder_stream.h not found (set ADDERFLOW_HLS_TEMPLATES)")
    return d


class AdderVitisWriter(VitisWriter):
    def write_adder_sources(self, model):
        dst = Path(model.config.get_output_dir()) / "firmware" / "nnet_utils"
        dst.mkdir(parents=True, exist_ok=True)
        for h in sorted(templates_dir().glob("nnet_*.h")):
            shutil.copy(h, dst / h.name)

    def write_scheduled_pe_flag(self, model):
        """Model option 'ScheduledPE': C-simulate the adder PE's reuse-factor schedule itself instead of
        the filter-major C-simulation loop (same results; slower; what synthesis and cosim run)."""
        model_cfg = (model.config.get_config_value("HLSConfig") or {}).get("Model", {})
        if not model_cfg.get("ScheduledPE"):
            return
        script = Path(model.config.get_output_dir()) / "build_lib.sh"
        text = script.read_text()
        script.write_text(text.replace('CFLAGS="-O3 -fPIC"', 'CFLAGS="-O3 -fPIC -DADDERFLOW_SCHEDULED_PE"', 1))

    def write_build_opts(self, model):
        """`vitis_hls -f build_prj.tcl` runs csim, csynth, cosim (checked against csim) and IP export."""
        from flow.hls.project import set_build_options

        set_build_options(model.config.get_output_dir(), csim=True, synth=True, cosim=True, export=True)

    def set_stream_depths(self, model):
        """Model option 'StreamDepths': 'minimal' (default: 2, residual joins sized to the branch lag; see
        flow.hls.stream_depths) or 'hls4ml-default' (every stream as deep as its tensor has pixels)."""
        from flow.hls.stream_depths import apply_stream_depths

        model_cfg = (model.config.get_config_value("HLSConfig") or {}).get("Model", {})
        if model_cfg.get("StreamDepths", "minimal") == "minimal":
            apply_stream_depths(model)

    def write_weight_storage(self, model):
        """Per-layer option LayerName.<name>.WeightStorage = 'bram': bind that layer's (reshaped, RF-deep)
        weight ROM to block RAM instead of leaving the choice to HLS (LUT ROM when shallow)."""
        layer_cfg = (model.config.get_config_value("HLSConfig") or {}).get("LayerName", {})
        lines = []
        for layer in model.get_layers():
            storage = str((layer_cfg.get(layer.name) or {}).get("WeightStorage", "")).lower()
            if storage == "bram" and "weight" in layer.weights:
                lines.append(f"    #pragma HLS BIND_STORAGE variable={layer.weights['weight'].name} type=rom_1p impl=bram\n")
        if not lines:
            return
        top = Path(model.config.get_output_dir()) / "firmware" / f"{model.config.get_project_name()}.cpp"
        text = top.read_text()
        anchor = "    #pragma HLS DATAFLOW\n"
        if anchor not in text:
            raise ValueError(f"{top}: no DATAFLOW pragma to place the weight storage bindings after")
        top.write_text(text.replace(anchor, anchor + "".join(lines), 1))

    def write_hls(self, model, is_multigraph=False):
        self.set_stream_depths(model)
        super().write_hls(model)
        self.write_weight_storage(model)
        self.write_adder_sources(model)
        self.write_scheduled_pe_flag(model)
