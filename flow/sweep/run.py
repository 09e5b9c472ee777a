"""Run a sweep: plan the tasks (one per distinct set of inputs), reuse what the cache holds, submit the
rest to an executor (a configuration's later stages as soon as its quantization is done), and gather one
row per configuration."""

from __future__ import annotations

import sys
import time

from flow.sweep import stages as st
from flow.sweep.cache import Cache, task_key
from flow.sweep.config import Sweep


def run_sweep(sweep: Sweep, cache_root, executor, progress: bool = True) -> tuple[list, dict]:
    """-> (rows, stats). rows: per configuration {"config", "label", "stages": {stage: outcome}};
    an outcome is {"status": "done"|"failed"|"not run", "result"?, "error"?, "cached"?}."""
    from tqdm import tqdm

    cache = Cache(cache_root)
    later = [s for s in sweep.stages if s in st.computed_stages() and s != "quantize"]
    qkeys = [task_key("quantize", st.quantize_inputs(c)) for c in sweep.configs]
    # distinct downstream tasks per quantization: known before any qnet digest (for the bar's total)
    downstream = {}
    for cfg, qk in zip(sweep.configs, qkeys):
        for s in later:
            downstream.setdefault(qk, {}).setdefault((s, task_key(s, st.stage_inputs(s, cfg, qk))), cfg)
    total = len(set(qkeys)) + sum(len(v) for v in downstream.values())
    stats = {"tasks": total, "cached": 0, "computed": 0, "failed": 0, "seconds_by_stage": {}}
    outcomes = {}          # (stage, key) -> outcome
    bar = tqdm(total=total, desc="sweep", unit="task", file=sys.stderr, disable=not progress, dynamic_ncols=True,
               smoothing=0.1)
    t0 = time.perf_counter()

    def finished(stage, key, outcome, cached):
        if outcome["ok"]:
            out = {"status": "done", "result": outcome["result"], "cached": cached}
            stats["cached" if cached else "computed"] += 1
            if not cached:
                sec = outcome["result"].get("seconds", 0.0)
                stats["seconds_by_stage"][stage] = round(stats["seconds_by_stage"].get(stage, 0.0) + sec, 3)
        else:
            out = {"status": "failed", "error": outcome["error"]}
            stats["failed"] += 1
        outcomes[(stage, key)] = out
        bar.update(1)
        return out

    def start(stage, key, params):
        hit = cache.get(stage, key)
        if hit is not None:
            return finished(stage, key, {"ok": True, "result": hit}, True)
        executor.submit({"stage": stage, "key": key, "cache": str(cache.root), "params": params})
        return None

    def start_downstream(qk):
        q = outcomes[("quantize", qk)]
        for (s, proxy), cfg in downstream.get(qk, {}).items():
            if q["status"] != "done":
                outcomes[(s, proxy)] = {"status": "failed", "error": f"quantize failed: {q['error']}"}
                stats["failed"] += 1
                bar.update(1)
                continue
            key = task_key(s, st.stage_inputs(s, cfg, q["result"]["qnet_digest"]))
            alias[(s, proxy)] = key
            params = {**cfg, "qnet_dir": str(cache.entry("quantize", qk) / st.QNET_DIR),
                      "images": cfg["csim_images"] if s == "csim" else cfg["images"]}
            if start(s, key, params) is not None:
                outcomes[(s, proxy)] = outcomes[(s, key)]

    alias = {}             # (stage, proxy key) -> real key (the qnet digest is known only after quantize)
    try:
        for cfg, qk in zip(sweep.configs, qkeys):
            if ("quantize", qk) in outcomes or any(t["key"] == qk for t in executor.pending.values()):
                continue
            if start("quantize", qk, cfg) is not None:
                start_downstream(qk)
        while executor.pending:
            task, outcome = executor.wait_any()
            finished(task["stage"], task["key"], outcome, False)
            if task["stage"] == "quantize":
                start_downstream(task["key"])
            else:
                for (s, proxy), key in alias.items():
                    if s == task["stage"] and key == task["key"]:
                        outcomes[(s, proxy)] = outcomes[(s, key)]
    finally:
        bar.close()
    stats["wall_s"] = round(time.perf_counter() - t0, 2)

    rows = []
    for cfg, qk in zip(sweep.configs, qkeys):
        row = {"config": cfg, "label": sweep.label(cfg), "stages": {"quantize": outcomes[("quantize", qk)]}}
        for s in sweep.stages:
            if s in later:
                row["stages"][s] = outcomes[(s, task_key(s, st.stage_inputs(s, cfg, qk)))]
            elif s != "quantize":
                row["stages"][s] = {"status": "not run", "error": st.not_run_reason(s)}
        rows.append(row)
    return rows, stats
