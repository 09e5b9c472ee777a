"""Choose per-layer reuse factors for a target throughput on a board (estimate).

Balancing rule: every window/dense layer gets the LARGEST reuse factor whose cycles still fit the
target interval (clock / fps), i.e. the fewest parallel lanes; no layer is faster than it needs to
be. Layers whose cycles do not depend on a reuse factor (requant, pooling: one pixel per cycle; the
window layers' input rate) set a floor on the interval. If the balanced design does not fit the board,
the over-capacity resource is the one that binds, and we search the highest frame rate that fits.
With weights_to_bram, LUT-ROM weight memories move to BRAM (largest LUT saving first) while LUT is over
capacity and BRAM has room (needs a storage binding per layer in the backend: a proposal).
"""

from __future__ import annotations

import math

from flow.boards import Board, get_board
from flow.errors import AdderFlowError
from flow.qnet import QNet
from flow.report.estimate import RESOURCES, Estimator, board_fit, estimate

TUNABLE = ("conv2d", "adder2d", "dense")


def _cycles_at(est: Estimator, op, rf: int) -> int:
    est.reuse[op.name] = rf
    return est.op_model(op)["cycles"]


def balanced_reuse(net: QNet, board: Board, target_interval: float, clock_mhz: float, tune_requant: bool = False,
                   **kw) -> tuple[dict, list]:
    """({op: RF}, [ops that cannot reach the interval even at RF=1, with their floor]).
    tune_requant: also time-multiplex requant channels (a proposal; the template runs C lanes)."""
    est = Estimator(net, board, clock_mhz, None, **kw)
    reuse, too_slow = {}, []
    for op in net.ops:
        if op.kind == "requant" and tune_requant:
            c = net.tensors[op.output].shape[-1]
            r = c
            while r > 1 and _cycles_at(est, op, r) > target_interval:
                r -= 1
            lanes = math.ceil(c / r)
            reuse[op.name] = math.ceil(c / lanes)
            if _cycles_at(est, op, reuse[op.name]) <= target_interval:
                continue
        if op.kind not in TUNABLE:
            c = est.op_model(op)["cycles"]
            if c > target_interval:
                too_slow.append({"name": op.name, "kind": op.kind, "min_cycles": c,
                                 "why": "one pixel per cycle: its cycle count has no reuse factor to trade"})
            continue
        n = op.arrays["weight"].size
        if _cycles_at(est, op, 1) > target_interval:
            reuse[op.name] = 1
            too_slow.append({"name": op.name, "kind": op.kind, "min_cycles": _cycles_at(est, op, 1),
                             "why": "even fully parallel (RF=1) its input stream (one pixel per cycle) is slower"})
            continue
        lo, hi = 1, n                      # largest RF with cycles <= target (cycles grow with RF)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if _cycles_at(est, op, mid) <= target_interval:
                lo = mid
            else:
                hi = mid - 1
        lanes = math.ceil(n / lo)
        reuse[op.name] = math.ceil(n / lanes)  # same lanes, shallowest weight memory
    return reuse, too_slow


def fit_reuse(qnet: QNet, board, target_fps: float, clock_mhz: float, tune_requant: bool = False,
              weights_to_bram: bool = False, **kw) -> dict:
    """Reuse factors for `target_fps` on `board`; whether the result fits, what binds, the best that fits."""
    board = get_board(board) if isinstance(board, str) else board
    if target_fps <= 0:
        raise AdderFlowError(f"--target-fps must be positive, got {target_fps}")
    hz = float(clock_mhz) * 1e6
    interval = hz / float(target_fps)
    reuse, too_slow = balanced_reuse(qnet, board, interval, clock_mhz, tune_requant, **kw)
    est = estimate(qnet, board, clock_mhz, reuse, **kw)
    fit = board_fit(est["resources"], board, est["per_layer"])
    if weights_to_bram and not fit["fits"] and not fit["resources"]["LUT"]["fits"]:
        kw["bram_weights"], est, fit = _trade_lut_for_bram(qnet, board, clock_mhz, reuse, est, **kw)
    over = [k for k in RESOURCES if not fit["resources"][k]["fits"]]
    out = {"source": "estimate", "target_fps": float(target_fps), "clock_mhz": float(clock_mhz),
           "target_interval_cycles": int(interval), "reuse": reuse, "latency": est["latency"],
           "resources": {k: est["resources"][k] for k in RESOURCES}, "board_fit": fit,
           "meets_target": not too_slow and est["latency"]["images_per_s"] >= target_fps * 0.999,
           "fits": fit["fits"], "rate_limited_by": too_slow, "binding": None,
           "design": {"tune_requant": tune_requant, "weights_to_bram": weights_to_bram,
                      **{k: (sorted(v) if isinstance(v, (set, list, tuple)) else v) for k, v in kw.items()
                         if k != "pe"}}}
    if too_slow:
        out["binding"] = "stream rate of " + ", ".join(t["name"] for t in too_slow[:3])
    elif over:
        util = {k: fit["resources"][k]["utilisation_pct"] for k in over}
        out["binding"] = max(util, key=util.get)
    if not fit["fits"] or too_slow:
        kw.pop("bram_weights", None)
        out["max_fps_that_fits"] = max_fps_that_fits(qnet, board, clock_mhz, hi_fps=target_fps,
                                                     tune_requant=tune_requant, weights_to_bram=weights_to_bram, **kw)
    return out


def _trade_lut_for_bram(net: QNet, board: Board, clock_mhz: float, reuse: dict, est: dict, **kw):
    """Bind LUT-ROM weight memories to BRAM, biggest LUT saving first, while LUT is over and BRAM fits."""
    chosen = set(kw.pop("bram_weights", ()) or ())
    fit = board_fit(est["resources"], board, est["per_layer"])
    roms = sorted((L for L in est["per_layer"] if L["weights_in"] == "LUT ROM"),
                  key=lambda L: -L["parts"]["weights"]["LUT"])
    for L in roms:
        trial = chosen | {L["name"]}
        e2 = estimate(net, board, clock_mhz, reuse, bram_weights=trial, **kw)
        f2 = board_fit(e2["resources"], board, e2["per_layer"])
        if not f2["resources"]["BRAM_18K"]["fits"]:
            break
        chosen, est, fit = trial, e2, f2
        if fit["fits"]:
            break
    return sorted(chosen), est, fit


def max_fps_that_fits(net: QNet, board: Board, clock_mhz: float, hi_fps: float, iterations: int = 18,
                      tune_requant: bool = False, weights_to_bram: bool = False, **kw) -> dict:
    """Bisection on the frame rate: the fastest balanced design that fits the board (estimate)."""
    lo, best = 0.0, None
    hi = float(hi_fps)
    for _ in range(iterations):
        mid = (lo + hi) / 2 if best is not None or lo > 0 else hi / 2
        reuse, too_slow = balanced_reuse(net, board, float(clock_mhz) * 1e6 / mid, clock_mhz, tune_requant, **kw)
        est = estimate(net, board, clock_mhz, reuse, **kw)
        fit = board_fit(est["resources"], board, est["per_layer"])
        if weights_to_bram and not fit["fits"] and not fit["resources"]["LUT"]["fits"]:
            _, est, fit = _trade_lut_for_bram(net, board, clock_mhz, reuse, est, **kw)
        ok = fit["fits"] and not too_slow
        if ok:
            lo, best = mid, {"fps": est["latency"]["images_per_s"], "reuse": reuse,
                             "resources": {k: est["resources"][k] for k in RESOURCES}}
        else:
            hi = mid
        if hi - lo < max(1.0, 0.005 * hi):
            break
    return best or {"fps": 0.0, "reuse": None, "note": "no balanced design fits this board"}
