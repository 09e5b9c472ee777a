"""Calibration: run the float graph over calibration images and record what quantization needs.

Activation ranges follow the authors' outlier clamp: per batch of 128 images, the value of sorted |x|
at index round(alpha * (n - 1)) (paper, appendix A.3), and the maximum over batches. Ranges for a set
of alphas are recorded in one pass so alpha can be swept without re-running the float network.
Stats are cached on disk keyed by a hash of the weights, the images and the alphas; the cache only
saves time, so a damaged file or an unwritable folder is a miss with one warning line.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError
from flow.quant import graph as fgraph

ALPHAS = (1.0, 0.99999, 0.9999, 0.9998, 0.9997, 0.9995, 0.999, 0.998, 0.997, 0.995, 0.99)
AUTHORS_BATCH = 128
SAMPLE_PER_BATCH = 16384
CACHE_VERSION = "3"
# bias correction compares per-channel means over this many calibration images (enough samples per
# channel, half the cost of the sequential integer pass over all 512)
CORRECTION_IMAGES = 256


@dataclass
class CalibStats:
    alphas: tuple
    ranges: dict = field(default_factory=dict)     # tensor -> array (len(alphas),): the clamp A per alpha
    input_absmax: float = 0.0
    pre_mean: dict = field(default_factory=dict)   # requant op -> per-channel mean of its float pre-activation
    out_absmax: dict = field(default_factory=dict)  # tensor -> max |x| (all tensors)
    samples: dict = field(default_factory=dict)     # tensor -> random sample of its values (MSE clamp search)
    n_images: int = 0
    pre_mean_images: int = 0                        # pre_mean covers the first this many images

    def clamp(self, tensor: str, alpha: float) -> float:
        """Activation range A of a tensor at quantile alpha."""
        a = np.asarray(self.alphas)
        i = np.flatnonzero(np.isclose(a, alpha, rtol=0, atol=1e-9))
        if not len(i):
            raise AdderFlowError(f"alpha {alpha} was not calibrated (calibrated: {list(self.alphas)})")
        return float(self.ranges[tensor][i[0]])

    def mse_clamp(self, tensor: str, bits: int) -> float:
        """The range A minimising the mean squared error of b-bit unsigned quantization on [0, A]."""
        return mse_optimal_clamp(self.samples[tensor], bits)

    def to_arrays(self) -> dict:
        out = {"alphas": np.asarray(self.alphas), "input_absmax": np.asarray(self.input_absmax),
               "n_images": np.asarray(self.n_images), "pre_mean_images": np.asarray(self.pre_mean_images)}
        out.update({f"range/{k}": v for k, v in self.ranges.items()})
        out.update({f"pre_mean/{k}": v for k, v in self.pre_mean.items()})
        out.update({f"absmax/{k}": np.asarray(v) for k, v in self.out_absmax.items()})
        out.update({f"sample/{k}": v for k, v in self.samples.items()})
        return out

    @classmethod
    def from_arrays(cls, z) -> "CalibStats":
        s = cls(alphas=tuple(float(a) for a in z["alphas"]), input_absmax=float(z["input_absmax"]),
                n_images=int(z["n_images"]), pre_mean_images=int(z["pre_mean_images"]))
        for k in z.files:
            if k.startswith("range/"):
                s.ranges[k[6:]] = np.asarray(z[k])
            elif k.startswith("pre_mean/"):
                s.pre_mean[k[9:]] = np.asarray(z[k])
            elif k.startswith("absmax/"):
                s.out_absmax[k[7:]] = float(z[k])
            elif k.startswith("sample/"):
                s.samples[k[7:]] = np.asarray(z[k])
        return s


def quantile_ranges(absx: np.ndarray, alphas) -> np.ndarray:
    """sorted(|x|)[round(alpha * (n - 1))] for each alpha, by partial sorting."""
    flat = np.ravel(absx)
    n = flat.size
    idx = np.unique([int(round(a * (n - 1))) for a in alphas])
    part = np.partition(flat, idx)
    lookup = dict(zip(idx, part[idx]))
    return np.asarray([lookup[int(round(a * (n - 1)))] for a in alphas], dtype=np.float64)


def mse_optimal_clamp(sample: np.ndarray, bits: int, candidates: int = 160) -> float:
    """Grid search of the clamp A in (0, max] for round-half-up b-bit unsigned quantization."""
    x = np.asarray(sample, dtype=np.float64).ravel()
    top = float(x.max()) if x.size else 0.0
    if top <= 0:
        return 1.0
    levels = (1 << bits) - 1
    best_a, best_err = top, np.inf
    for A in np.linspace(top / candidates, top, candidates):
        step = A / levels
        q = np.minimum(np.floor(x / step + 0.5), levels) * step
        err = float(np.mean((q - x) ** 2))
        if err < best_err:
            best_a, best_err = A, err
    return float(best_a)


def check_images(images: np.ndarray, graph: fgraph.FloatGraph, source: str = "calibration data") -> np.ndarray:
    x = np.asarray(images)
    if x.size == 0 or len(x) == 0:
        raise AdderFlowError(f"{source}: no calibration images")
    if x.dtype != np.uint8:
        xf = x.astype(np.float64)
        if not np.all(np.isfinite(xf)):
            raise AdderFlowError(f"{source}: calibration images contain NaN or infinite values")
        raise AdderFlowError(f"{source}: calibration images must be uint8 (got {x.dtype})")
    if tuple(x.shape[1:]) != tuple(graph.input_shape):
        raise AdderFlowError(f"{source}: images have shape {tuple(x.shape[1:])}, model {graph.name} takes {graph.input_shape}")
    return x


def calibrate(graph: fgraph.FloatGraph, images: np.ndarray, alphas=ALPHAS, batch_size: int = AUTHORS_BATCH,
              progress: bool = True) -> CalibStats:
    """One float pass over the images (uint8 NHWC) in batches of `batch_size`."""
    images = check_images(images, graph)
    alphas = tuple(sorted(set(float(a) for a in alphas), reverse=True))
    per_batch: dict = {}
    sums: dict = {}
    samples: dict = {}
    rng = np.random.default_rng(0)
    stats = CalibStats(alphas=alphas, n_images=len(images))
    stats.pre_mean_images = min(len(images), max(CORRECTION_IMAGES, batch_size) // batch_size * batch_size)
    seen = [0]

    def observe(op, inputs, out):
        if op.kind == "requant" and seen[0] < stats.pre_mean_images:
            v = fgraph.pre_activation(op, inputs)
            s = v.reshape(-1, v.shape[-1]).astype(np.float64).sum(axis=0)
            cnt = v.size // v.shape[-1]
            acc = sums.setdefault(op.name, [0.0, 0])
            acc[0] = acc[0] + s
            acc[1] += cnt
        if op.kind == "requant":
            if op.attrs["relu"]:
                per_batch.setdefault(op.output, []).append(quantile_ranges(out, alphas))
                flat = out.ravel()
                samples.setdefault(op.output, []).append(flat[rng.integers(0, flat.size, SAMPLE_PER_BATCH)])
        m = float(np.max(np.abs(out))) if out.size else 0.0
        stats.out_absmax[op.output] = max(stats.out_absmax.get(op.output, 0.0), m)

    starts = range(0, len(images), batch_size)
    if progress:
        from tqdm import tqdm
        starts = tqdm(starts, desc="calibration", unit="batch", leave=False)
    for i in starts:
        x = graph.normalize(images[i:i + batch_size])
        stats.input_absmax = max(stats.input_absmax, float(np.max(np.abs(x))))
        fgraph.run(graph, x, observe)
        seen[0] += len(x)
    stats.ranges = {t: np.max(np.stack(v), axis=0) for t, v in per_batch.items()}
    stats.pre_mean = {k: v[0] / v[1] for k, v in sums.items()}
    stats.samples = {t: np.concatenate(v).astype(np.float32) for t, v in samples.items()}
    return stats


def graph_digest(graph: fgraph.FloatGraph) -> str:
    h = hashlib.sha1(graph.name.encode())
    for o in graph.ops:
        h.update(o.name.encode())
        for k in sorted(o.arrays):
            h.update(np.ascontiguousarray(o.arrays[k], dtype=np.float64).tobytes())
    return h.hexdigest()[:16]


def calibrate_cached(graph: fgraph.FloatGraph, images: np.ndarray, alphas=ALPHAS, cache: Path | None = None,
                     progress: bool = True) -> CalibStats:
    """`calibrate`, re-using stats stored under `cache` (default: the user cache) for the same inputs."""
    from flow.paths import cache_dir

    images = check_images(images, graph)
    alphas = tuple(sorted(set(float(a) for a in alphas), reverse=True))
    key = hashlib.sha1((CACHE_VERSION + graph_digest(graph) + json.dumps(alphas)).encode())
    key.update(np.ascontiguousarray(images).tobytes())
    folder = Path(cache) if cache is not None else cache_dir() / "calibration"
    path = folder / f"{graph.name}_{key.hexdigest()[:16]}.npz"
    cached = _read_cache(path)
    if cached is not None:
        return cached
    stats = calibrate(graph, images, alphas, progress=progress)
    _write_cache(path, stats)
    return stats


def _cache_warning(text: str) -> None:
    # the cache only saves time: a problem with it is one line on stderr, never a failed run
    print(f"adderflow: WARNING: calibration cache {text}", file=sys.stderr, flush=True)


def _read_cache(path: Path) -> CalibStats | None:
    """The stats stored at `path`, or None (absent, or unreadable: truncated, foreign, wrong version)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return CalibStats.from_arrays(z)
    except Exception as exc:  # BadZipFile, EOFError, KeyError of a missing array, OSError, ValueError...
        _cache_warning(f"{path} is unreadable ({type(exc).__name__}: {exc}); recalibrating and rewriting it")
        return None


def _write_cache(path: Path, stats: CalibStats) -> None:
    """Store atomically: a temp file unique to this writer in the same folder, then os.replace, so
    concurrent runs of the same key each replace a complete file and a reader never sees half of one."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **stats.to_arrays())
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        _cache_warning(f"not written to {path.parent} ({exc.strerror or exc}); the stats are not cached")
    finally:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
