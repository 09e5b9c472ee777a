"""`adderflow sweep SWEEP.yaml --out DIR`: a grid of configurations x stages (quantize, accuracy, estimate,
csim, ...) on a local process pool or a Ray cluster; every task cached under a content hash of its inputs
(a re-run skips finished work, a killed sweep resumes); writes DIR/sweep.csv, sweep.md, pareto.png."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from flow.errors import AdderFlowError


def add_arguments(p) -> None:
    p.add_argument("sweep", help="sweep file (.yaml): fixed settings, grid:, configs:, stages:, limits:")
    p.add_argument("--out", required=True, help="output folder (sweep.csv, sweep.md, pareto.png)")
    p.add_argument("--force", action="store_true", help="replace an existing --out folder")
    p.add_argument("--cache", help="task cache folder (default: $ADDERFLOW_CACHE/sweep); on a cluster it must "
                                   "be on a file system every node sees")
    p.add_argument("--workers", type=int, help="local worker processes (default: the file's workers:, else cores)")
    p.add_argument("--ray", metavar="ADDRESS",
                   help="run on a Ray cluster: 'auto' (the one this machine belongs to), HOST:PORT or ray://HOST:PORT")
    p.add_argument("--title", default=None, help="title of sweep.md and pareto.png (default: the sweep file name)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args) -> int:
    from flow.outputs import staged_output
    from flow.paths import cache_dir
    from flow.sweep.config import PATH_KEYS, load_sweep

    sweep = load_sweep(args.sweep)
    if args.workers is not None and args.workers < 1:
        raise AdderFlowError(f"--workers must be a positive integer, got {args.workers}")
    if args.ray is not None and args.workers is not None:
        raise AdderFlowError("--workers is for the local pool; a Ray cluster runs as many tasks as it has CPUs")
    cache = Path(args.cache) if args.cache else cache_dir() / "sweep"
    inputs = [args.sweep] + [c[k] for c in sweep.configs for k in PATH_KEYS if c[k]]
    # every check on --out and --cache before any work (flow.outputs); --out is written beside and swapped in
    from flow.outputs import check_output

    check_output(cache, force=True, inputs=inputs, kind="dir", what="--cache")
    with staged_output(Path(args.out), args.force, inputs=inputs + [cache], kind="dir", what="--out") as tmp:
        executor = _executor(args, sweep)
        try:
            print(f"adderflow sweep: {len(sweep.configs)} configurations, stages {', '.join(sweep.stages)}; "
                  f"{executor.describe()}; cache {cache}", flush=True)
            from flow.sweep.outputs import write_outputs
            from flow.sweep.run import run_sweep

            rows, stats = run_sweep(sweep, cache, executor, progress=not args.no_progress)
        finally:
            executor.close()
        flat = write_outputs(rows, sweep, stats, executor.describe(), tmp, args.title or Path(args.sweep).stem)
    failed = [f for f in flat if f["status"] != "ok"]
    print(f"adderflow sweep: cache: {stats['cached']} of {stats['tasks']} tasks reused, {stats['computed']} computed, "
          f"{stats['failed']} failed; {stats['wall_s']:.1f} s; wrote {args.out}/sweep.csv, sweep.md, pareto.png",
          flush=True)
    if failed:
        print(f"adderflow sweep: error: {len(failed)} of {len(flat)} configurations failed, first: "
              f"{failed[0]['label']}: {failed[0]['error']}", file=sys.stderr)
        return 1
    return 0


def _executor(args, sweep):
    from flow.sweep.executors import LocalExecutor, RayExecutor, executor_env

    if args.ray:
        return RayExecutor(args.ray, sweep.limits, executor_env())
    workers = args.workers or sweep.workers or len(os.sched_getaffinity(0))
    return LocalExecutor(workers, sweep.limits)
