"""`make hls MODEL=...`: the one command from a fresh clone to a C-simulated HLS project.

It resolves the inputs a new user does not have at hand yet — the official checkpoint (cache, then
download) and CIFAR-10 (a given folder, ../shared/data, the cache, then download) — and runs
the same library build as `adderflow hls` (flow.hls.build). Offline without them it still builds, with seeded weights or synthetic images, and
says loudly that accuracy figures are then meaningless.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError
from flow.paths import cache_dir, shared_dir

CHECKPOINTS = {
    "resnet20": {
        "file": "ResNet20-AdderNet.pth",
        "url": "https://github.com/huawei-noah/AdderNet/raw/d94dc43/models/ResNet20-AdderNet.pth",
        "sha256": "fe3ad7c15573d34cddd9b3ec2eed12d9c2c818e59cd7d0797a954d6f76ea375b",
    },
}
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
DOWNLOAD_TIMEOUT_S = 30


def add_arguments(p):
    p.add_argument("--model", default="resnet20")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("--board", default="kv260")
    p.add_argument("--weights", help="checkpoint (.pth/.keras); default: cached official checkpoint")
    p.add_argument("--data-dir", help="folder with *train*.npz + *test*.npz, or CIFAR-10 python batches")
    p.add_argument("--csim", type=int, default=100, help="C-simulate this many test images")
    p.add_argument("--reuse", type=int, help="reuse factor of every layer (default: the fastest design that "
                                                 "fits --board, estimated)")
    p.add_argument("--target-fps", type=float)
    p.add_argument("--shift-add", action="store_true", help="constant multiplications as shift-add (zero DSP)")
    p.add_argument("--out", required=True)
    p.add_argument("--force", action="store_true")


def say(msg: str) -> None:
    print(f"[make hls] {msg}", flush=True)


def loud(msg: str) -> None:
    bar = "!" * 78
    print(f"\n{bar}\n!! {msg}\n{bar}\n", file=sys.stderr, flush=True)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path) -> bool:
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        say(f"downloading {url}")
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
        tmp.replace(dest)
        return True
    except OSError as exc:
        say(f"download failed ({type(exc).__name__}: {exc}); working offline")
        tmp.unlink(missing_ok=True)
        return False


def resolve_weights(model: str, weights: str | None) -> Path | None:
    """A checkpoint path, or None when only seeded weights are possible."""
    if weights:
        p = Path(weights)
        if not p.is_file():
            raise AdderFlowError(f"weights file not found: {p}")
        return p
    ck = CHECKPOINTS.get(model)
    if ck is None:
        return None
    cached = cache_dir() / ck["file"]
    if cached.is_file() and _sha256(cached) == ck["sha256"]:
        return cached
    sd = shared_dir()
    if sd is not None and (sd / "models" / ck["file"]).is_file():
        return sd / "models" / ck["file"]
    cached.parent.mkdir(parents=True, exist_ok=True)
    if _download(ck["url"], cached):
        if _sha256(cached) == ck["sha256"]:
            return cached
        cached.unlink()
        say(f"downloaded checkpoint does not match sha256 {ck['sha256'][:12]}...; discarded")
    return None


def resolve_data(data_dir: str | None) -> Path | None:
    """A folder that flow.data.find_split_files understands, or None when none can be had."""
    if data_dir:
        return Path(data_dir)
    sd = shared_dir()
    if sd is not None and sorted((sd / "data").glob("*test*.npz")):
        return sd / "data"
    cifar = cache_dir() / "cifar-10-batches-py"
    if (cifar / "test_batch").is_file():
        return cifar
    tgz = cache_dir() / "cifar-10-python.tar.gz"
    tgz.parent.mkdir(parents=True, exist_ok=True)
    if tgz.is_file() or _download(CIFAR10_URL, tgz):
        with tarfile.open(tgz) as tf:
            tf.extractall(cache_dir(), filter="data")
        return cifar
    return None


def _seeded_weights(model: str, out: Path) -> Path:
    from flow.models import build_model

    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    m = build_model(model)
    path = cache_dir() / "seeded" / f"{model}.keras"      # outside --out: a --force rebuild never deletes it
    path.parent.mkdir(parents=True, exist_ok=True)
    m.save(path)
    return path


def _synthetic_data(out: Path, shape=(32, 32, 3)) -> Path:
    d = cache_dir() / "synthetic_data"
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in (("synthetic_train.npz", 512), ("synthetic_test.npz", 200)):
        np.savez(d / name, x=rng.integers(0, 256, (n, *shape), dtype=np.uint8), y=rng.integers(0, 10, n))
    return d


def run(args) -> int:
    """Resolve the inputs, quantize, then the same library call as `adderflow hls` (flow.hls.build)."""
    from flow.boards import get_board
    from flow.commands.quantize import load_calibration
    from flow.data import find_split_files, load_dataset
    from flow.hls.build import build
    from flow.outputs import check_output

    out = Path(args.out)
    if args.model == "resnet20_cnn":      # the stock hls4ml twin: the `adderflow hls` command path
        from flow.cli import main as cli_main

        return cli_main(["hls", "--model", "resnet20_cnn", "--bits", str(args.bits), "--board", args.board,
                         "--out", str(out), "--reuse", str(args.reuse or 16)] + (["--force"] if args.force else []))
    board = get_board(args.board)
    check_output(out, args.force, kind="dir", what="--out")       # before downloading or quantizing anything
    weights = resolve_weights(args.model, args.weights)
    if weights is None:
        loud(f"no checkpoint for '{args.model}' (offline and uncached): building with SEEDED RANDOM weights. "
             "The hardware/golden comparison is still exact, but ACCURACY FIGURES ARE MEANINGLESS.")
        weights = _seeded_weights(args.model, out)
    say(f"weights: {weights}")
    data = resolve_data(args.data_dir)
    if data is None:
        loud("no CIFAR-10 data (offline and uncached): calibrating and simulating on SYNTHETIC RANDOM images. "
             "ACCURACY FIGURES ARE MEANINGLESS.")
        data = _synthetic_data(out)
    calib, test = find_split_files(data)
    say(f"calibration data: {calib}   test data: {test}")
    from flow.quant import quantize

    net = quantize(args.model, weights, load_calibration(calib, 512), bits=args.bits, progress=True)
    images, labels = load_dataset(test, split="test", limit=args.csim) if args.csim > 0 else (None, None)
    b = build(net, out, board, reuse=args.reuse, target_fps=args.target_fps, dsp="zero" if args.shift_add else None,
              images=images, labels=labels, force=args.force, inputs=[weights, calib, test],
              source=f"quantized from {weights}", model=args.model, bits=args.bits)
    cs = b.csim_result
    say(f"built {out} ({b.design['how']}); report: {out / 'report.json'}")
    if cs and cs["mismatches"]:
        raise AdderFlowError(f"C simulation differs from the golden model in {cs['mismatches']} output values")
    return 0
