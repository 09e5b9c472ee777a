"""A build of the AdderVitis flow as one library object, as hls4ml's ModelGraph is for its project.

    from flow.hls.build import AdderBuild, build

    b = AdderBuild(qnet, "build/resnet20", board="kv260")
    b.choose_design()            # the fastest legal design that fits the board (estimate), or reuse=...
    b.write()                    # qnet/, hls_prj/ (hls4ml project + AXI top + test bench data)
    b.compile()                  # g++: the IP top (adderflow_top) + network, as synthesized
    logits = b.predict(x_int)    # integer inputs through the IP top
    b.csim(images, labels)       # against the integer golden model
    b.report()                   # report.json / .md / .png
    b.synth(cosim=True)          # vitis_hls, when on PATH (ToolMissingError otherwise)

`build(...)` runs choose/write/compile/csim/report into a temporary folder and swaps it in complete
(flow.outputs): what `adderflow hls` and `adderflow make-hls` call. Everything an estimate says is labelled.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError, ToolMissingError
from flow.report.estimate import TIGHT_PCT


def _say(msg: str) -> None:
    print(f"[hls] {msg}", flush=True)


class Steps:
    """Step lines with timings (the long steps show their own tqdm bars)."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.times = {}

    def run(self, name, fn, *a, **kw):
        _say(f"{name} ...")
        t = time.perf_counter()
        out = fn(*a, **kw)
        self.times[name] = dt = time.perf_counter() - t
        _say(f"{name}: {dt:.1f} s")
        return out


class AdderBuild:
    """One build folder: the QNet, the chosen design, the HLS project, its C simulation and report."""

    def __init__(self, qnet, directory, board="kv260", clock_mhz: float | None = None, source: str = "",
                 model: str = "resnet20", bits: int | None = None):
        from flow.boards import get_board

        self.qnet, self.dir = qnet, Path(directory)
        self.board = get_board(board) if isinstance(board, str) else board
        self.clock_mhz = float(clock_mhz or self.board.clock_mhz)
        self.source, self.model = source, model
        self.bits = bits if bits is not None else qnet.meta.get("bits")
        self.design: dict | None = None
        self.hls_model = None
        self.csim_result: dict | None = None
        self.steps = Steps()

    @property
    def hls_dir(self) -> Path:
        return self.dir / "hls_prj"

    # ---- the design -----------------------------------------------------------------------------
    def choose_design(self, reuse: int | None = None, reuse_config: dict | None = None, target_fps: float | None = None,
                      lut_limit: float = TIGHT_PCT, dsp: str | None = None) -> dict:
        """Reuse factors and DSP use (all legal, flow.hls.schedule): reuse_config entries (strict) over a
        model-wide `reuse` (per layer the largest legal value <= it) or `target_fps` (fit_reuse); otherwise
        the fastest balanced design that fits the board with LUT <= lut_limit %, zero-DSP first (`dsp`
        'zero' or 'plain' forces one). No design that fits: one line saying what does not fit."""
        from flow.hls import project
        from flow.report.fit import fit_reuse, max_fps_that_fits

        cfg = dict(reuse_config or {})
        project.resolve_reuse(self.qnet, 1, cfg)      # every named layer exists and its RF is legal
        if dsp not in (None, "zero", "plain"):
            raise AdderFlowError(f"dsp must be 'zero' or 'plain', got {dsp!r}")
        if reuse:
            rfs, adjusted = project.resolve_reuse(self.qnet, reuse, cfg)
            for line in adjusted:
                _say(f"--reuse {reuse}: {line} (the nearest legal value below)")
            self.design = {"reuse": rfs, "shift_add": dsp == "zero", "bram_weights": [], "how": f"--reuse {reuse}"}
            return self.design
        if target_fps:
            sa = dsp == "zero"
            fit = fit_reuse(self.qnet, self.board, target_fps, self.clock_mhz, weights_to_bram=True, shift_add_all=sa)
            self._print_fit(fit, target_fps)
            self.design = {"reuse": {**fit["reuse"], **cfg}, "shift_add": sa,
                           "bram_weights": list(fit["design"].get("bram_weights") or []),
                           "how": f"--target-fps {target_fps:g}", "fit": fit}
            return self.design
        tried = []
        for variant in {"zero": ["zero-DSP"], "plain": ["plain"]}.get(dsp, ["zero-DSP", "plain"]):
            sa = variant == "zero-DSP"
            best = max_fps_that_fits(self.qnet, self.board, self.clock_mhz, weights_to_bram=True,
                                     lut_limit_pct=lut_limit, shift_add_all=sa)
            if best.get("reuse"):
                u = best["utilisation_pct"]
                _say(f"fastest {variant} design that fits {self.board.name} with LUT <= {lut_limit:g}% (estimate): "
                     f"{best['fps']:.0f} images/s, LUT {u['LUT']}% FF {u['FF']}% BRAM {u['BRAM_18K']}% DSP {u['DSP']}%")
                self.design = {"reuse": {**best["reuse"], **cfg}, "shift_add": sa, "bram_weights": best["bram_weights"],
                               "how": f"fastest {variant} design that fits {self.board.name} (LUT <= {lut_limit:g}%)",
                               "fit": best}
                return self.design
            tried.append((variant, self._smallest_design(sa)))
        what = "; ".join(f"{v}: the smallest legal design needs LUT {r['LUT']:,} ({p:.0f}% of {self.board.lut:,})"
                         for v, (r, p) in tried)
        raise AdderFlowError(f"no design of {self.model} W{self.bits} fits {self.board.name} with LUT <= "
                             f"{lut_limit:g}% (estimate; {what}): use a larger --board (kv260, zcu104), --lut-limit, "
                             f"or --reuse R to build it anyway")

    def _smallest_design(self, shift_add: bool) -> tuple:
        """Resources of the slowest legal design (every layer at its largest RF) and its LUT %."""
        from flow.report.fit import smallest_design

        res = smallest_design(self.qnet, self.board, self.clock_mhz, shift_add_all=shift_add)
        return res, 100.0 * res["LUT"] / self.board.lut

    def _print_fit(self, fit, target_fps) -> None:
        lat, res = fit["latency"], fit["resources"]
        _say(f"--target-fps {target_fps:g} on {self.board.name} at {self.clock_mhz:g} MHz (estimate): "
             f"{lat['images_per_s']:.0f} images/s, LUT {res['LUT']} FF {res['FF']} BRAM18K {res['BRAM_18K']} "
             f"DSP {res['DSP']}; fits: {'yes' if fit['fits'] else 'no'}; binding: {fit['binding'] or 'none'}"
             + ("" if fit["meets_target"] else "; the target rate is NOT met"))
        if fit["design"].get("bram_weights"):
            _say(f"weight ROMs bound to BRAM: {', '.join(fit['design']['bram_weights'])}")

    # ---- the project ----------------------------------------------------------------------------
    def write(self, tb_images=None):
        """qnet/ and hls_prj/: the hls4ml project, test bench data (golden outputs of up to 10 images) and
        the AXI top with its test bench."""
        from flow import golden
        from flow.board.axi_top import write_axi_top
        from flow.hls import project

        if self.design is None:
            self.choose_design()
        d = self.design
        self.qnet.save(self.dir / "qnet")

        def convert():
            hm = project.convert(self.qnet, self.hls_dir, part=self.board.part, clock_mhz=self.clock_mhz, reuse=1,
                                 reuse_config=d["reuse"], shift_add=d["shift_add"], bram_weights=d["bram_weights"])
            hm.write()
            return hm

        self.hls_model = self.steps.run("write HLS project", convert)
        q = self.qnet
        tb_x = q.quantize_input(tb_images[:10]) if tb_images is not None else \
            np.zeros((1,) + tuple(q.tensors[q.input].shape), np.int64)
        project.write_tb_data(self.hls_dir, tb_x, golden.run(q, tb_x)[q.output])
        write_axi_top(self.hls_dir, q)
        return self.hls_model

    def compile(self) -> float:
        """g++ -O3 of the IP top (AXI unpack -> network -> AXI pack) as synthesized; seconds (cached)."""
        from flow.driver.emulation import build_csim_library

        t = time.perf_counter()
        self.steps.run("g++ compile (AXI top + network)", build_csim_library, self.hls_dir, opt="-O3")
        return time.perf_counter() - t

    def predict(self, x_int: np.ndarray, workers: int | None = None) -> np.ndarray:
        """Integer network inputs (N, H, W, C) through the compiled IP top; int64 logits (N, classes)."""
        from flow.hls import project

        return project.csim_axi(self.hls_dir, self.qnet, x_int, workers=workers)

    def csim(self, images: np.ndarray, labels: np.ndarray | None = None, workers: int | None = None) -> dict:
        """C simulation of uint8 images against the golden model: mismatches, accuracy, images/s."""
        from flow import golden

        compile_s = self.compile()
        x_int = self.qnet.quantize_input(images)
        want = self.steps.run("golden model", golden.run, self.qnet, x_int)[self.qnet.output].reshape(len(x_int), -1)
        t = time.perf_counter()
        got = self.predict(x_int, workers)
        sim_s = time.perf_counter() - t
        mism = int(np.sum(got != want))
        cs = {"images": int(len(x_int)), "mismatches": mism, "outputs_compared": int(want.size),
              "path": "adderflow_top (AXI unpack -> network, n_images per call -> AXI pack), g++ -O3",
              "accuracy": float(np.mean(got.argmax(1) == labels)) if labels is not None else None,
              "golden_accuracy": float(np.mean(want.argmax(1) == labels)) if labels is not None else None,
              "compile_s": round(compile_s, 2), "csim_s": round(sim_s, 3),
              "csim_images_per_s": round(len(x_int) / sim_s, 2) if sim_s > 0 else None}
        acc = "" if labels is None else f"; accuracy {cs['accuracy']:.2%} (golden {cs['golden_accuracy']:.2%})"
        _say(f"C simulation: {mism} mismatching output values of {want.size} vs the golden model{acc}; "
             f"{cs['csim_images_per_s']} images/s")
        self.csim_result = cs
        return cs

    # ---- report and vendor tools ----------------------------------------------------------------
    def report(self, final: Path | None = None) -> dict:
        """report.json/.md/.png (estimate unless vendor reports exist); paths name `final` (where a staged
        build lands)."""
        from flow.hls import project
        from flow.report import write_report

        d = self.design or {}
        rep = write_report(self.dir, self.qnet, model=self.model, bits=self.bits, board=self.board.name,
                           clock_mhz=self.clock_mhz, reuse=d.get("reuse"), csim=self.csim_result, hls_dir=self.hls_dir,
                           shift_add_all=bool(d.get("shift_add")),
                           **({"bram_weights": d["bram_weights"]} if d.get("bram_weights") else {}))
        mults = project.layer_multipliers(self.hls_model) if self.hls_model is not None else {}
        rep.setdefault("hls", {}).update({
            "source_network": self.source, "backend": "AdderVitis", "project": str((final or self.dir) / "hls_prj"),
            "design": d.get("how"), "zero_dsp": bool(d.get("shift_add")), "bram_weights": d.get("bram_weights", []),
            "multipliers_per_layer": mults, "layers_with_multipliers": sorted(k for k, v in mults.items() if v),
            "fit": _fit_summary(d.get("fit")),
            "stream_depths": ((self.hls_model.config.config.get("AdderFlow") or {}).get("stream_depths", {})
                              if self.hls_model is not None else {}),
            "step_seconds": {k: round(v, 2) for k, v in self.steps.times.items()}})
        (self.dir / "report.json").write_text(json.dumps(rep, indent=1, default=_json_default))
        return rep

    def synth(self, cosim: bool = False, fifo_opt: bool = False) -> dict | None:
        """csynth/cosim/export with build_prj.tcl; with fifo_opt first a profiling cosim at deep FIFOs, then
        the build at the depths it measured (hls_prj/fifo_depths.json). Returns those depths."""
        from flow.board.axi_top import project_name
        from flow.hls import fifo_depths, project

        if not project.vitis_hls_available():
            raise ToolMissingError("vitis_hls is not on PATH: --synth/--cosim skipped; the HLS project, C "
                                   "simulation and report were written")
        depths = None
        if fifo_opt:
            cpp = self.hls_dir / "firmware" / f"{project_name(self.hls_dir)}.cpp"
            initial = fifo_depths.set_stream_depths(cpp, fifo_depths.PROFILING_DEPTH)
            project.set_build_options(self.hls_dir, csim=False, synth=True, cosim=True, export=False, fifo_opt=True)
            _vitis(self.hls_dir, "vitis_hls_fifo_opt.log")
            depths = fifo_depths.read_cosim_depths(self.hls_dir)
            changed = fifo_depths.set_stream_depths(cpp, depths)
            (self.hls_dir / "fifo_depths.json").write_text(json.dumps(
                {n: {"initial": initial[n][0], "optimized": new} for n, (_, new) in changed.items()}, indent=1))
        project.set_build_options(self.hls_dir, csim=True, synth=True, cosim=cosim or fifo_opt, export=True)
        _vitis(self.hls_dir, "vitis_hls.log")
        return depths


def build(qnet, out, board="kv260", *, clock_mhz=None, reuse=None, reuse_config=None, target_fps=None,
          lut_limit: float = TIGHT_PCT, dsp: str | None = None, images=None, labels=None, force: bool = False,
          inputs=(), source: str = "", model: str = "resnet20", bits: int | None = None,
          csim_workers: int | None = None) -> AdderBuild:
    """choose_design -> write -> csim (when images) -> report, built in a temporary folder beside `out` and
    swapped in complete (flow.outputs.staged_output: nothing is overwritten without force, an `out` that
    holds an input is refused). Returns the AdderBuild, pointing at `out`."""
    from flow.outputs import staged_output

    with staged_output(out, force, inputs=inputs, kind="dir", what="--out") as tmp:
        b = AdderBuild(qnet, tmp, board, clock_mhz, source, model, bits)
        b.steps.run("choose the design", b.choose_design, reuse, reuse_config, target_fps, lut_limit, dsp)
        b.write(images)
        if images is not None:
            b.csim(images, labels, csim_workers)
        b.steps.run("report", b.report, Path(out))
    b.dir = Path(out)
    return b


def _vitis(hls_dir: Path, log_name: str) -> None:
    log = hls_dir / log_name
    with open(log, "w") as fh:
        rc = subprocess.run(["vitis_hls", "-f", "build_prj.tcl"], cwd=hls_dir, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise AdderFlowError(f"vitis_hls failed (exit {rc}); see {log}")


def _fit_summary(fit) -> dict | None:
    """What the design choice rested on (estimate): rate, reuse factors, fit, binding resource."""
    if not fit:
        return None
    if "latency" in fit:       # fit_reuse (target_fps)
        return {"source": "estimate", "target_fps": fit["target_fps"], "images_per_s": fit["latency"]["images_per_s"],
                "fits": fit["fits"], "binding": fit["binding"], "meets_target": fit["meets_target"],
                "reuse": fit["reuse"]}
    return {"source": "estimate", "images_per_s": fit["fps"], "fits": True, "reuse": fit["reuse"],
            "utilisation_pct": fit["utilisation_pct"], "bram_weights": fit["bram_weights"]}


def _json_default(v):
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, np.ndarray):
        return v.tolist()
    return str(v)
