"""ResNet-20 (official AdderNet checkpoint) through the emulated PYNQ overlay: the full chain
(driver quantisation + packing -> AXI wrapper -> AdderVitis hls4ml C++ -> unpacking) against the
integer golden model, on CIFAR-10 test images. Also executes the notebook on the same build.

    .venv/bin/python bench/driver_emulation.py [--bits 4 8] [--images 100] [--calib 500]

Writes bench/results/driver_emulation.md and bench/results/resnet20_cifar10_emulation.ipynb.
Builds are kept (and reused) under build/bench_driver/. Speeds are host C simulation (2 shared
cores), not board figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flow import golden, qnet as qnet_mod  # noqa: E402
from flow.boards import get_board  # noqa: E402
from flow.paths import shared_dir  # noqa: E402

RESULTS = REPO / "bench" / "results"


def make_build(root: Path, bits: int, calib: int, board: str) -> tuple[Path, dict]:
    """qnet/ + hls_prj/ (AdderVitis backend + AXI wrapper) + report.json; reused when present."""
    out = root / f"resnet20_w{bits}_{board}"
    times = {}
    if (out / "qnet" / "qnet.json").is_file() and (out / "hls_prj" / "adderflow_ip.json").is_file():
        return out, times
    from flow.board.axi_top import write_axi_top
    from flow.hls import project
    from flow.quant.api import quantize

    sh = shared_dir()
    train = np.load(sh / "data" / "cifar10_train2k.npz")["x"][:calib]
    t0 = time.perf_counter()
    net = quantize("resnet20", sh / "models" / "ResNet20-AdderNet.pth", train, bits=bits, progress=True)
    times["quantize_s"] = time.perf_counter() - t0
    net.save(out / "qnet")
    b = get_board(board)
    t0 = time.perf_counter()
    project.convert(net, out / "hls_prj", part=b.part, clock_mhz=b.clock_mhz).write()
    write_axi_top(out / "hls_prj", net)
    times["hls_write_s"] = time.perf_counter() - t0
    report = {"model": "resnet20", "bits": bits, "board": b.name, "part": b.part, "clock_mhz": b.clock_mhz,
              "source": "bench/driver_emulation.py (official checkpoint, AdderVitis backend)",
              "csim": {}, "latency": {}, "resources": {}}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    return out, times


def run_notebook(build: Path, n: int, dest: Path) -> float:
    import nbclient
    import nbformat
    os.environ.update(ADDERFLOW_BUILD=str(build), ADDERFLOW_NOTEBOOK_IMAGES=str(n))
    nb = nbformat.read(REPO / "notebooks" / "resnet20_cifar10.ipynb", as_version=4)
    t0 = time.perf_counter()
    nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",
                            resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
    nbformat.write(nb, dest)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bits", type=int, nargs="+", default=[4])
    ap.add_argument("--images", type=int, default=100)
    ap.add_argument("--calib", type=int, default=500)
    ap.add_argument("--board", default="pynq-z2")
    ap.add_argument("--root", default=str(REPO / "build" / "bench_driver"))
    ap.add_argument("--notebook-images", type=int, default=20)
    args = ap.parse_args()
    if shared_dir() is None:
        print("../shared is absent: needs the checkpoint and CIFAR-10 subsets")
        return 1
    from flow.driver.emulation import EmulatedOverlay, build_csim_library

    test = np.load(shared_dir() / "data" / "cifar10_test1k.npz")
    x, y = test["x"][:args.images], test["y"][:args.images].ravel()
    rows = []
    for bits in args.bits:
        build, times = make_build(Path(args.root), bits, args.calib, args.board)
        with tempfile.TemporaryDirectory() as tmp:   # a fresh g++ build, timed (the cache would hide it)
            t0 = time.perf_counter()
            lib = build_csim_library(build / "hls_prj", out_dir=tmp, verbose=True)
            compile_s = time.perf_counter() - t0
            (build / "emulation").mkdir(exist_ok=True)
            if not (build / "emulation" / lib.name).exists():
                shutil.copy(lib, build / "emulation" / lib.name)
        ov = EmulatedOverlay(build, batch_size=25)
        net = qnet_mod.load(build / "qnet")
        t0 = time.perf_counter()
        emu = ov.predict_int(x)
        emu_s = time.perf_counter() - t0
        gold = golden.predict_int(net, x)
        tp = ov.throughput_test(batch_size=8, repeats=1, images=x[:8])
        rows.append({
            "bits": bits, "images": len(x), "mismatch": int((emu != gold).sum()), "values": emu.size,
            "acc_emu": float((emu.argmax(1) == y).mean()), "acc_gold": float((gold.argmax(1) == y).mean()),
            "compile_s": compile_s, "emu_ips": len(x) / emu_s, "tp_ips": tp["throughput_images_per_s"],
            "words": f"{ov.input_layout.words} / {ov.output_layout.words}",
            "lanes": f"{ov.input_layout.lane_bits} / {ov.output_layout.lane_bits}", **times})
        ov.close()
        print(rows[-1], flush=True)
    nb_dest = RESULTS / "resnet20_cifar10_emulation.ipynb"
    lines = ["# ResNet-20 AdderNet through the emulated PYNQ overlay", "",
             f"Official checkpoint, CIFAR-10 test1k first {args.images} images, board {args.board}, "
             f"calibration on {args.calib} train images. Emulation = g++ C simulation of the AdderVitis "
             "hls4ml project + the generated AXI wrapper, driven by the same driver code as the board "
             "(flow.driver.core). Speeds are host C simulation on 2 shared cores, NOT board figures.", "",
             "| bits | images | logits differing from golden | accuracy (emulated overlay) | accuracy (golden) "
             "| g++ compile (s) | emulated images/s | DMA words/image in / out | lane bits in / out |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| W{r['bits']}A{r['bits']} | {r['images']} | {r['mismatch']} of {r['values']} "
                     f"| {r['acc_emu']:.2%} | {r['acc_gold']:.2%} | {r['compile_s']:.1f} "
                     f"| {r['emu_ips']:.1f} | {r['words']} | {r['lanes']} |")
    lines += ["", "g++ compile: a fresh build of the C simulation library (-O2). "
              "`emulated images/s` is `predict_int` on all images (batches of 25); `throughput_test` on 8 "
              "images gave " + ", ".join(f"W{r['bits']}: {r['tp_ips']:.2f}" for r in rows) + " images/s."]
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "driver_emulation.md").write_text("\n".join(lines) + "\n")
    nb_s = run_notebook(build, args.notebook_images, nb_dest)
    lines += ["", f"Notebook executed on the W{args.bits[-1]} build ({args.notebook_images} images) in "
              f"{nb_s:.0f} s: `bench/results/{nb_dest.name}`."]
    text = "\n".join(lines) + "\n"
    (RESULTS / "driver_emulation.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
