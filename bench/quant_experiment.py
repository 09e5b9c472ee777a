"""Helpers for the quantization benchmarks: the official ResNet-20, cached calibration, golden accuracy.

The protocol of issue 4: calibrate on the first 512 images of train2k, choose options on train2k
images 1000-1999, report on all of test1k.
"""

from __future__ import annotations

import time

import numpy as np

from flow import golden
from flow.quant.calibrate import ALPHAS, calibrate_cached
from flow.quant.redistribution import QuantConfig, build_qnet

CALIB = slice(0, 512)
RUNS = __import__("pathlib").Path(__file__).resolve().parent / "results" / "quant_runs.json"
SELECT = slice(1000, 2000)


class Experiment:
    def __init__(self, graph, calib_images, progress: bool = True):
        self.graph, self.calib = graph, np.asarray(calib_images)
        self.stats = calibrate_cached(graph, self.calib, ALPHAS, progress=progress)

    def build(self, **cfg):
        return build_qnet(self.graph, self.stats, QuantConfig(**cfg), calib_images=self.calib)

    def accuracy(self, images, labels, **cfg) -> tuple[float, dict]:
        """Golden-model top-1 (%) and extras: cross-entropy (nats/image), timings, the QNet."""
        t0 = time.time()
        net = self.build(**cfg)
        t1 = time.time()
        logits = net.dequantize_output(golden.predict_int(net, images))
        t2 = time.time()
        pred = logits.argmax(axis=1)
        return 100.0 * float(np.mean(pred == labels)), {"build_s": t1 - t0, "golden_s": t2 - t1, "net": net,
                                                        "ce": cross_entropy(logits, labels)}

    def accuracy_cached(self, split: str, images, labels, store=None, cached_only: bool = False,
                        **cfg) -> tuple[float, float]:
        """(top-1 %, cross-entropy), re-using a result stored in the JSON file `store` for the same split,
        image count and configuration (benchmarks are slow on two shared cores; reruns cost nothing)."""
        import json
        from pathlib import Path

        from dataclasses import asdict

        full = asdict(QuantConfig(**cfg).resolved())
        short = {k: v for k, v in full.items() if not (k in ("affine_correction",) and not v)}
        keys = [f"{split}:{len(labels)}:" + json.dumps(sorted(r.items()), default=str) for r in (short, full)]
        key = keys[0]
        path = Path(store) if store else None
        done = json.loads(path.read_text()) if path is not None and path.is_file() else {}
        for k in keys:   # results stored before an option existed have no entry for it
            if k in done:
                return tuple(done[k][:2])
        if cached_only:
            return None
        # a configuration that yields the very same integer network (e.g. k-means groups that all get
        # s_g = A) gives the same accuracy: look it up by the network's digest before running it
        net = self.build(**cfg)
        dkey = f"{split}:{len(labels)}:qnet:{qnet_digest(net)}"
        if dkey in done:
            acc, ce = done[dkey][:2]
            gs = 0.0
        else:
            t0 = time.time()
            logits = net.dequantize_output(golden.predict_int(net, images))
            gs = time.time() - t0
            acc, ce = 100.0 * float(np.mean(logits.argmax(1) == labels)), cross_entropy(logits, labels)
        if path is not None:
            done = json.loads(path.read_text()) if path.is_file() else {}
            done[key] = done[dkey] = [acc, ce, gs]
            path.write_text(json.dumps(done, indent=0))
        return acc, ce

    def float_accuracy_cached(self, split: str, images, labels, store=None) -> float:
        import json
        from pathlib import Path

        from flow.quant.calibrate import graph_digest

        key = f"{split}:{len(labels)}:float:{graph_digest(self.graph)}"
        path = Path(store) if store else None
        done = json.loads(path.read_text()) if path is not None and path.is_file() else {}
        if key not in done:
            done[key] = [self.float_accuracy(images, labels)]
            if path is not None:
                fresh = json.loads(path.read_text()) if path.is_file() else {}
                fresh[key] = done[key]
                path.write_text(json.dumps(fresh, indent=0))
        return done[key][0]

    def float_accuracy(self, images, labels) -> float:
        from flow.quant.graph import predict

        return 100.0 * float(np.mean(predict(self.graph, images).argmax(axis=1) == labels))


def qnet_digest(net) -> str:
    import hashlib

    h = hashlib.sha1()
    for o in net.ops:
        h.update(f"{o.kind}{o.name}{o.inputs}{o.attrs.get('shift')}{o.attrs.get('stride')}{o.attrs.get('pads')}".encode())
        for k in sorted(o.arrays):
            if k in ("group_in_mult", "group_in_shift"):   # folded into group_of_channel below
                continue
            a = np.asarray(o.arrays[k])
            if k == "group_of_channel":   # group ids matter only through the per-group rescale
                a = np.asarray([o.arrays["group_in_mult"][g] * 1000 + o.arrays["group_in_shift"][g] for g in a])
            h.update(k.encode() + np.ascontiguousarray(a, dtype=np.int64).tobytes())
    for t in net.tensors.values():
        h.update(f"{t.name}{t.bits}{t.signed}".encode())
    h.update(repr(net.input_quant).encode())
    return h.hexdigest()[:20]


def cross_entropy(logits, labels) -> float:
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-np.mean(logp[np.arange(len(labels)), labels]))


def official_resnet20(shared=None):
    """(graph, train x, train y, test x, test y) from ../shared, or None when it is absent."""
    from flow.checkpoint import load_state_dict
    from flow.paths import shared_dir
    from flow.quant.graph import from_resnet20_state_dict

    d = shared or shared_dir()
    if d is None:
        return None
    sd = load_state_dict(d / "models" / "ResNet20-AdderNet.pth")
    tr = np.load(d / "data" / "cifar10_train2k.npz")
    te = np.load(d / "data" / "cifar10_test1k.npz")
    return from_resnet20_state_dict(sd), tr["x"], tr["y"].astype(np.int64), te["x"], te["y"].astype(np.int64)


def official_resnet20_or_exit():
    """official_resnet20() for the benches: without ../shared there is nothing to measure (exit 1)."""
    loaded = official_resnet20()
    if loaded is None:
        raise SystemExit("../shared is absent: nothing to measure")
    return loaded


def markdown_table(header: list, rows: list) -> str:
    out = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        out.append("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r) + " |")
    return "\n".join(out)
