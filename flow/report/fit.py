"""Choose per-layer reuse factors for a target throughput on a board (estimate).

Balancing rule: every window/dense layer gets the LARGEST legal reuse factor (flow.hls.schedule) whose
cycles still fit the target interval (clock / fps), i.e. the fewest lanes; no layer is faster than it
needs to be. A requant fused into its window layer follows that layer; one that is not gets the largest
R dividing its channels whose cycles fit. Layers whose cycles do not depend on a reuse factor (pooling;
the window layers' input rate) set a floor on the interval. The design space is discrete, so the fastest
design that fits is a binary search over the candidate intervals (max_fps_that_fits). With
weights_to_bram, LUT-ROM weight memories move to BRAM (largest LUT saving first) while LUT is over and
BRAM has room (the backend's WeightStorage binding).
"""

from __future__ import annotations


from flow.boards import Board, get_board
from flow.errors import AdderFlowError
from flow.hls import schedule
from flow.qnet import QNet
from flow.report.estimate import RESOURCES, TUNABLE, Estimator, board_fit, estimate


def _cycles_at(est: Estimator, op, rf: int) -> int:
    est.reuse[op.name] = rf
    return est.op_model(op)["cycles"]


def balanced_reuse(net: QNet, board: Board, target_interval: float, clock_mhz: float, tune_requant: bool = True,
                   **kw) -> tuple[dict, list]:
    """({op: RF}, [ops that cannot reach the interval even at their smallest RF, with their floor]).
    Only legal reuse factors (flow.hls.schedule.legal_reuse_factors) are searched. A requant fused into
    its window layer follows that layer; one that is not fused (tune_requant) gets the largest R dividing
    its channels whose cycles fit."""
    est = Estimator(net, board, clock_mhz, None, **kw)
    reuse, too_slow = {}, []
    for op in net.ops:
        if op.kind == "requant":
            if op.name in est.fused_into or not tune_requant:
                continue
            c = net.tensors[op.output].shape[-1]
            legal = schedule.divisors(c)
            fits = [r for r in legal if _cycles_at(est, op, r) <= target_interval]
            reuse[op.name] = max(fits) if fits else 1
            if fits:
                continue
        if op.kind not in TUNABLE:
            c = est.op_model(op)["cycles"]
            if c > target_interval:
                too_slow.append({"name": op.name, "kind": op.kind, "min_cycles": c,
                                 "why": "one pixel per cycle: its cycle count has no reuse factor to trade"})
            continue
        legal = schedule.legal_reuse_factors(schedule.inputs_per_output(op))
        fits = [rf for rf in legal if _cycles_at(est, op, rf) <= target_interval]
        if not fits:
            reuse[op.name] = legal[0]
            too_slow.append({"name": op.name, "kind": op.kind, "min_cycles": _cycles_at(est, op, legal[0]),
                             "why": "even fully parallel (RF=1) its input stream (one pixel per cycle) is slower"})
            continue
        reuse[op.name] = max(fits)           # the fewest lanes that keep the interval
        est.reuse[op.name] = reuse[op.name]
    return reuse, too_slow


def fit_reuse(qnet: QNet, board, target_fps: float, clock_mhz: float, tune_requant: bool = True,
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


def _trade_lut_for_bram(net: QNet, board: Board, clock_mhz: float, reuse: dict, est: dict,
                        lut_limit_pct: float = 100.0, **kw):
    """Bind LUT-ROM weight memories to BRAM, biggest LUT saving first, while LUT is over and BRAM fits."""
    chosen = set(kw.pop("bram_weights", ()) or ())
    fit = board_fit(est["resources"], board, est["per_layer"], lut_limit_pct)
    roms = sorted((L for L in est["per_layer"] if L["weights_in"] == "LUT ROM"),
                  key=lambda L: -L["parts"]["weights"]["LUT"])
    for L in roms:
        trial = chosen | {L["name"]}
        e2 = estimate(net, board, clock_mhz, reuse, bram_weights=trial, **kw)
        f2 = board_fit(e2["resources"], board, e2["per_layer"], lut_limit_pct)
        if not f2["resources"]["BRAM_18K"]["fits"]:
            break
        chosen, est, fit = trial, e2, f2
        if fit["fits"]:
            break
    return sorted(chosen), est, fit


def smallest_design(net: QNet, board: Board, clock_mhz: float, **kw) -> dict:
    """Resources of the slowest legal design (every layer at its largest legal reuse factor): what a board
    must hold for any design of this network to fit (estimate)."""
    return estimate(net, board, clock_mhz, 10**9, **kw)["resources"]


def candidate_intervals(net: QNet, board: Board, clock_mhz: float, **kw) -> list:
    """Every interval a balanced design can have: the cycles of each tunable op at each legal reuse
    factor (the design space is discrete), ascending."""
    est = Estimator(net, board, clock_mhz, None, **kw)
    vals = set()
    for op in net.ops:
        if op.kind in TUNABLE:
            for rf in schedule.legal_reuse_factors(schedule.inputs_per_output(op)):
                vals.add(_cycles_at(est, op, rf))
        elif op.kind == "requant" and op.name not in est.fused_into:
            for r in schedule.divisors(net.tensors[op.output].shape[-1]):
                vals.add(_cycles_at(est, op, r))
    return sorted(vals)


def max_fps_that_fits(net: QNet, board: Board, clock_mhz: float, hi_fps: float | None = None,
                      tune_requant: bool = True, weights_to_bram: bool = False, lut_limit_pct: float = 100.0,
                      **kw) -> dict:
    """The fastest balanced design that fits the board with LUT at most lut_limit_pct % (estimate):
    a binary search over the candidate intervals (larger interval, fewer lanes: monotone)."""
    cands = candidate_intervals(net, board, clock_mhz, **kw)
    if hi_fps:
        floor = float(clock_mhz) * 1e6 / float(hi_fps)
        cands = [c for c in cands if c >= floor] or cands[-1:]

    def trial(interval):
        reuse, too_slow = balanced_reuse(net, board, interval, clock_mhz, tune_requant, **kw)
        bram = []
        est = estimate(net, board, clock_mhz, reuse, **kw)
        fit = board_fit(est["resources"], board, est["per_layer"], lut_limit_pct)
        if weights_to_bram and not fit["fits"] and not fit["resources"]["LUT"]["fits"]:
            bram, est, fit = _trade_lut_for_bram(net, board, clock_mhz, reuse, est, lut_limit_pct, **kw)
        ok = fit["fits"] and not too_slow
        return ok, {"fps": est["latency"]["images_per_s"], "interval_cycles": est["latency"]["interval_cycles"],
                    "reuse": reuse, "bram_weights": list(bram),
                    "resources": {k: est["resources"][k] for k in RESOURCES},
                    "utilisation_pct": {k: fit["resources"][k]["utilisation_pct"] for k in RESOURCES}}

    lo, hi, best = 0, len(cands) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        ok, res = trial(cands[mid])
        if ok:
            best, hi = res, mid - 1
        else:
            lo = mid + 1
    return best or {"fps": 0.0, "reuse": None,
                    "note": f"no balanced design fits {board.name} with LUT <= {lut_limit_pct:g}%"}
