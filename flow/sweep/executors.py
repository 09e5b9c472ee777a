"""Where tasks run: a local pool (default) or a Ray cluster. Either way each task runs in a child process
of its own with a wall-clock limit and an address-space cap (RLIMIT_AS) from the sweep's `limits:`, so a
task that hangs or eats memory fails alone, with one line, and the same task gives the same result on
every executor (the child runs the same `flow.sweep.stages.execute`).

Interface: `submit(task)`, `wait_any() -> (task, outcome)`, `close()`; an outcome is
{"ok": True, "result": {...}} or {"ok": False, "error": "one line"}.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from flow.errors import AdderFlowError

# Imported once in the fork server, so that each task's child starts without re-importing them. Nothing
# that starts threads (TensorFlow) belongs here: the children are forked from this process.
PRELOAD = ["numpy", "flow.sweep.stages", "flow.quant", "flow.golden", "flow.report.fit", "flow.data"]
LOG = "task.log"
# The fork server keeps the environment it started with; a task sees these as they are when it is run.
ENV_KEYS = ("ADDERFLOW_SHARED", "ADDERFLOW_CACHE", "ADDERFLOW_HLS_TEMPLATES", "TF_CPP_MIN_LOG_LEVEL", "PATH")


def _child(task: dict, memory_gb: float, env: dict, conn) -> None:
    import resource

    from flow.sweep import stages

    for k in ENV_KEYS:
        if env.get(k) is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = env[k]

    cap = int(memory_gb * (1 << 30))
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    # a task's own prints (build steps, TF) go to a log beside the cache, not across the progress bar
    log = Path(task["cache"]) / LOG
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        out = {"ok": True, "result": stages.execute(task)}
    except BaseException as exc:        # any failure is this task's one line; the sweep goes on
        out = {"ok": False, "error": stages.check_stage_error(exc, memory_gb)}
    conn.send(out)
    conn.close()


_ctx = None


def _context():
    global _ctx
    if _ctx is None:
        _ctx = mp.get_context("forkserver")
        _ctx.set_forkserver_preload(PRELOAD)
    return _ctx


def run_limited(task: dict, seconds: float, memory_gb: float) -> dict:
    """Run one task in a fresh child process: killed after `seconds`, address space capped at memory_gb."""
    ctx = _context()
    Path(task["cache"]).mkdir(parents=True, exist_ok=True)
    recv, send = ctx.Pipe(duplex=False)
    env = {k: os.environ.get(k) for k in ENV_KEYS}
    p = ctx.Process(target=_child, args=(task, memory_gb, env, send), daemon=True)
    p.start()
    send.close()
    try:
        if not recv.poll(seconds):
            return {"ok": False, "error": f"timed out after {seconds:g} s (limits.seconds)"}
        try:
            return recv.recv()
        except EOFError:
            p.join(5)
            code = p.exitcode
            why = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
            return {"ok": False, "error": f"task process died ({why}; limits.memory_gb = {memory_gb:g})"}
    finally:
        if p.is_alive():
            p.kill()
        p.join()
        recv.close()


class LocalExecutor:
    """`workers` tasks at a time on this machine (threads that each wait on one task's child process)."""

    name = "local"

    def __init__(self, workers: int, limits: dict):
        self.workers, self.limits = int(workers), limits
        self.pool = cf.ThreadPoolExecutor(max_workers=self.workers)
        self.pending = {}

    def describe(self) -> str:
        return f"local pool, {self.workers} worker{'s' if self.workers != 1 else ''}"

    def submit(self, task: dict) -> None:
        fut = self.pool.submit(run_limited, task, self.limits["seconds"], self.limits["memory_gb"])
        self.pending[fut] = task

    def wait_any(self):
        done, _ = cf.wait(list(self.pending), return_when=cf.FIRST_COMPLETED)
        fut = next(iter(done))
        return self.pending.pop(fut), fut.result()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _remote_run(task, seconds, memory_gb):
    return run_limited(task, seconds, memory_gb)


class RayExecutor:
    """Tasks as Ray remote functions on an existing cluster (`auto`, `HOST:PORT`, `ray://HOST:PORT`).

    The flow package travels with the job (runtime_env py_modules), so the cluster runs this version of
    the code; the cache folder must be on a file system every node sees (one machine: always)."""

    name = "ray"

    def __init__(self, address: str, limits: dict, env: dict | None = None):
        try:
            import ray
        except ImportError:
            raise AdderFlowError("--ray needs Ray: pip install 'adderflow[cluster]'") from None
        import flow

        self.ray, self.limits, self.address = ray, limits, address
        runtime_env = {"py_modules": [str(Path(flow.__file__).parent)],
                       "env_vars": {k: v for k, v in (env or {}).items() if v is not None}}
        try:
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, logging_level="ERROR",
                     configure_logging=True)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise AdderFlowError(f"--ray {address}: cannot connect ({' '.join(str(exc).split())[:200]})") from None
        self.workers = int(ray.cluster_resources().get("CPU", 1))
        self.fn = ray.remote(num_cpus=1, max_retries=0)(_remote_run)
        self.pending = {}

    def describe(self) -> str:
        return f"Ray cluster at {self.address}, {self.workers} CPUs"

    def submit(self, task: dict) -> None:
        ref = self.fn.remote(task, self.limits["seconds"], self.limits["memory_gb"])
        self.pending[ref] = task

    def wait_any(self):
        done, _ = self.ray.wait(list(self.pending), num_returns=1)
        ref = done[0]
        task = self.pending.pop(ref)
        try:
            return task, self.ray.get(ref)
        except Exception as exc:        # the worker itself died: this task fails, the sweep goes on
            return task, {"ok": False, "error": f"ray: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"}

    def close(self) -> None:
        self.ray.shutdown()


def executor_env() -> dict:
    """What a task on another process tree needs to see the same files as here."""
    from flow.paths import cache_dir, hls_templates_dir, shared_dir

    d = shared_dir()
    return {"ADDERFLOW_SHARED": str(d) if d else None, "ADDERFLOW_CACHE": str(cache_dir()),
            "ADDERFLOW_HLS_TEMPLATES": str(hls_templates_dir()), "TF_CPP_MIN_LOG_LEVEL": "2"}


# ---- a private local Ray cluster (tests and the bench start and stop one of their own) -----------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalRayCluster:
    """`ray start --head --block` on loopback with `cpus` CPUs, stopped by ending that process (and its
    process group: the raylet and GCS it started), never by `ray stop`, which would end every Ray
    cluster on the machine."""

    def __init__(self, cpus: int = 2, timeout: float = 90.0):
        exe = Path(sys.executable).with_name("ray")
        if not exe.exists():
            raise AdderFlowError("ray is not installed (pip install 'adderflow[cluster]')")
        self.port = _free_port()
        self.address = f"127.0.0.1:{self.port}"
        # short: Ray's unix socket paths live under it and must stay below 108 characters
        self.tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
        cmd = [str(exe), "start", "--head", "--block", f"--port={self.port}", "--node-ip-address=127.0.0.1",
               f"--num-cpus={cpus}", "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={self.tmp}", f"--ray-client-server-port={_free_port()}", "--num-gpus=0",
               "--object-store-memory=200000000"]   # bounded: tasks pass small dicts, files go via the cache
        # a token of its own (Ray's token authentication is on): a driver joins with RAY_AUTH_TOKEN=self.token
        import secrets

        self.token = secrets.token_hex(32)
        # what a driver of this cluster needs in its environment too: token mode with this token, and the
        # loopback address (on Linux Ray replaces 127.0.0.1 with the machine's address unless its "not a
        # cluster" switch is set, which makes every node address the loopback one)
        self.env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        env = {**os.environ, **self.env}
        env.pop("RAY_AUTH_TOKEN_PATH", None)
        self.log = open(Path(self.tmp) / "head.log", "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AdderFlowError(f"ray start exited with {self.proc.returncode}; see {self.tmp}/head.log")
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    time.sleep(2.0)        # the GCS answers before the raylet has registered
                    return
            time.sleep(0.5)
        self.stop()
        raise AdderFlowError(f"local Ray cluster did not start within {timeout:g} s; see {self.tmp}/head.log")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)     # ray start --block ends the processes it started
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # anything of its group that outlived it
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()
        import shutil

        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
