"""Vitis writer that also copies AdderFlow's C++ layer library into the project's firmware/nnet_utils."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from hls4ml.writer.vitis_writer import VitisWriter

from flow.paths import hls_templates_dir


def templates_dir() -> Path:
    d = hls_templates_dir()
    if not (d / "nnet_adder_stream.h").is_file():
        raise FileNotFoundError(f"{d}/nnet_adder_stream.h not found (set ADDERFLOW_HLS_TEMPLATES)")
    return d


def rom_arrays_read(layer) -> list:
    """The per-cycle ROMs a window/dense layer reads (what a storage binding may name)."""
    if "weight" not in layer.weights:
        return []
    if layer.class_name != "QAdderConv2D" and int(layer.get_attr("csd_terms", 0) or 0) > 0:
        return ["csd_exps", "csd_signs"]     # shift-add lanes read their exponents, not the weight values
    return ["weight"]


class AdderVitisWriter(VitisWriter):
    def write_adder_sources(self, model):
        dst = Path(model.config.get_output_dir()) / "firmware" / "nnet_utils"
        dst.mkdir(parents=True, exist_ok=True)
        for h in sorted(templates_dir().glob("nnet_*.h")):
            shutil.copy(h, dst / h.name)

    def write_image_loop(self, model):
        """Every process loops over the images of one call (UG1399 task-level pipelining: images overlap
        in the DATAFLOW region). The network function takes `n_images` (default 1, so hls4ml's bridge and
        test bench run unchanged); hls4ml's clone_stream becomes adder_clone_stream, which loops too."""
        name = model.config.get_project_name()
        fw = Path(model.config.get_output_dir()) / "firmware"
        for path, default in ((fw / f"{name}.cpp", ""), (fw / f"{name}.h", " = 1")):
            text = path.read_text()
            sig = re.search(rf"void {name}\((.*?)\)", text, re.S)
            if not sig:
                raise ValueError(f"{path}: no signature of {name}() to add n_images to")
            params = sig.group(1).rstrip()
            text = text[:sig.start(1)] + params + f",\n    unsigned n_images{default}\n" + text[sig.end(1):]
            if path.suffix == ".cpp":
                text, n = re.subn(r"nnet::clone_stream<([^;]*?)>\(([^;]*?)\);",
                                  r"nnet::adder_clone_stream<\1>(\2, n_images);", text)
                calls = re.findall(r"^\s*nnet::\w+<[^;]*;", text, re.M)
                missing = [c.strip() for c in calls if "n_images" not in c and "load_weights" not in c]
                if missing:
                    raise ValueError(f"{path}: process calls without the image count: {missing[:2]}")
            path.write_text(text)

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
            depths = apply_stream_depths(model)
            model.config.config.setdefault("AdderFlow", {})["stream_depths"] = depths

    def write_weight_storage(self, model):
        """Per-layer option LayerName.<name>.WeightStorage = 'bram': bind the ROMs that layer READS per reuse
        cycle (RF > 1) to block RAM instead of leaving the choice to HLS (LUT ROM when shallow): the weights
        of an adder layer, the shift-add tables (not the unread weights) of a shift-add conv/dense."""
        layer_cfg = (model.config.get_config_value("HLSConfig") or {}).get("LayerName", {})
        lines = []
        for layer in model.get_layers():
            storage = str((layer_cfg.get(layer.name) or {}).get("WeightStorage", "")).lower()
            if storage != "bram" or int(layer.get_attr("reuse_factor", 1) or 1) == 1:
                continue
            for name in rom_arrays_read(layer):
                lines.append(f"    #pragma HLS BIND_STORAGE variable={layer.weights[name].name} type=rom_1p impl=bram\n")
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
        self.write_image_loop(model)
