"""Design-space sweeps (issue 14): a grid of configurations x stages, each task cached under a content
hash of its inputs, run on a local process pool or a Ray cluster, summarised as sweep.csv/.md/pareto.png.

    from flow.sweep import load_sweep, run_sweep
    sweep = load_sweep("bench/sweep_resnet20.yaml")
    rows, stats = run_sweep(sweep, cache_root, executor)

One module per concern: config (the YAML), stages (what each task computes), cache (content-hashed
results), executors (local pool, Ray; per-task time and memory limits), outputs (csv, md, png).
"""

from flow.sweep.config import Sweep, load_sweep
from flow.sweep.run import run_sweep

__all__ = ["Sweep", "load_sweep", "run_sweep"]
