"""Quantization-aware fine-tuning of a Keras model: the AdderNet recipe of `flow.train`, resumable.

The optimisation is the one of `flow.train` (SGD momentum 0.9, coupled L2 weight decay added to the
gradients before momentum, cosine learning rate to 0 over all steps, crop+flip for 32x32 RGB); the
adaptive eta of adder kernels lives in the layers themselves (`flow.layers.adder.scale_kernel_gradient`).
What QAT adds:

- model selection on a validation split of the TRAINING data (`val_split`, default 5%, drawn with a fixed
  seed): the best validation epoch is exported. The test set is never read here;
- a checkpoint after every epoch in OUT/checkpoints/epoch_NNN/ (weights, optimizer slots and iteration
  counter, numpy RNG state, the data-order cursor, history), written to a temporary folder and renamed, so
  that `resume=True` continues from the last complete epoch with the same batches and learning rates as an
  uninterrupted run;
- `steps_per_epoch` for budgeted runs (an epoch is then that many batches; the data order is one stream of
  permutations across epochs, so every image is seen before any is repeated);
- at the end the best model goes through `export(model)` (flow.qat.export_qnet) to OUT/qnet/ and the
  per-epoch history to OUT/summary.json.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError

CHECKPOINTS = "checkpoints"
QNET_DIR = "qnet"
SUMMARY = "summary.json"
BEST_WEIGHTS = "best.npz"
_STATE = "state.json"          # written last into an epoch folder: an epoch folder without it is ignored
_ARRAYS = "arrays.npz"
# the validation split is drawn with its own fixed seed, so that runs with different training seeds (and a
# resumed run) select on the same images
VAL_SPLIT_SEED = 12345
DEFAULT_VAL_SPLIT = 0.05
BN_STATS = ("frozen", "batch")
# settings a resumed run must share with the run that wrote the checkpoints (else it is another run)
_RESUME_KEYS = ("data", "epochs", "batch_size", "lr", "momentum", "weight_decay", "val_split", "steps_per_epoch",
                "limit", "seed", "augment", "bn_stats", "bn_standardize", "freeze", "adder_gradient")


@dataclass
class QATConfig:
    data: str
    epochs: int = 1
    batch_size: int = 64
    lr: float = 0.01            # fine-tuning from a trained solution: a tenth of the from-scratch 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    val_split: float = DEFAULT_VAL_SPLIT
    steps_per_epoch: int | None = None   # None: one pass over the training part
    limit: int | None = None             # first N samples of the data (before the validation split)
    seed: int = 0
    augment: bool | None = None          # None: crop+flip for 32x32x3 images only
    eval_batch_size: int = 200
    # BatchNorm in inference mode while training (statistics frozen, gamma/beta still learn): the forward
    # that is trained is the one that is exported. "batch": the usual batch statistics.
    bn_stats: str = "frozen"
    # re-centre every BatchNorm on its input's statistics over this many training images before the first
    # step (the same function, see standardize_batchnorm); 0: off
    bn_standardize: int = 512
    # "addernet" / "sign": the adder layers' backward rule for this run (None: as the model was built)
    adder_gradient: str | None = None
    freeze: list = field(default_factory=list)   # layer names (fnmatch patterns) whose weights are not trained
    extra: dict = field(default_factory=dict)   # what built the model (init, bits): recorded, and checked on resume

    def check(self) -> None:
        """Every value, one line each, before anything is loaded or written."""
        for name in ("epochs", "batch_size", "eval_batch_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise AdderFlowError(f"--{name.replace('_', '-')} must be a positive integer, got {v}")
        if self.steps_per_epoch is not None and self.steps_per_epoch <= 0:
            raise AdderFlowError(f"--steps-per-epoch must be positive, got {self.steps_per_epoch}")
        if self.limit is not None and self.limit <= 0:
            raise AdderFlowError(f"--limit must be positive, got {self.limit}")
        if not self.lr > 0:
            raise AdderFlowError(f"--lr must be positive, got {self.lr}")
        if self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise AdderFlowError(f"--weight-decay must be >= 0 and momentum in [0, 1), got {self.weight_decay}, "
                                 f"{self.momentum}")
        if self.bn_stats not in BN_STATS:
            raise AdderFlowError(f"--bn-stats must be one of {', '.join(BN_STATS)}, got '{self.bn_stats}'")
        if not isinstance(self.bn_standardize, int) or self.bn_standardize < 0:
            raise AdderFlowError(f"bn_standardize must be an image count >= 0, got {self.bn_standardize}")
        if not 0 < self.val_split < 1:
            raise AdderFlowError(f"--val-split must be a fraction in (0, 1), got {self.val_split}")


def split_train_val(n: int, val_split: float) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices) of n training samples: a fixed-seed draw, both sorted."""
    n_val = int(round(n * val_split))
    if n_val < 1 or n_val >= n:
        raise AdderFlowError(f"--val-split {val_split} of {n} training samples leaves {n_val} for validation "
                             f"and {n - n_val} for training; both need at least one")
    order = np.random.default_rng(VAL_SPLIT_SEED).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def load_split(cfg: QATConfig):
    """(x_train, y_train, x_val, y_val) from the training split of `cfg.data` only."""
    from flow.data import load_dataset

    x, y = load_dataset(cfg.data, split="train", limit=cfg.limit)
    tr, va = split_train_val(len(x), cfg.val_split)
    return x[tr], y[tr], x[va], y[va]


def default_preprocess(x_uint8: np.ndarray) -> np.ndarray:
    """The float recipe of flow.data (x/255, CIFAR mean/std for 3 channels)."""
    from flow.data import dataset_kind, preprocess

    return preprocess(x_uint8, dataset_kind(x_uint8))


def latest_checkpoint(out) -> Path | None:
    """The last complete epoch folder under OUT/checkpoints, or None."""
    d = Path(out) / CHECKPOINTS
    if not d.is_dir():
        return None
    done = sorted(p for p in d.glob("epoch_*") if (p / _STATE).is_file())
    return done[-1] if done else None


def checkpoint_config(out) -> dict | None:
    """The configuration recorded in the last checkpoint (what a resume must match), or None."""
    last = latest_checkpoint(out)
    if last is None:
        return None
    return json.loads((last / _STATE).read_text())["config"]


def _bn_inference(model):
    """Make every BatchNormalization of `model` normalise with its moving statistics even in a training
    call (gamma and beta still get gradients); returns the function that undoes it.

    Why not training=False: flow.qat's adder layers compute their inference forward from the integer SADs
    (the golden integers) without a gradient, so the step must be a training call; and not
    `layer.trainable = False`, which would freeze gamma and beta too."""
    import tensorflow as tf

    patched = []
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            def call(inputs, training=None, _orig=layer.call, **kwargs):
                return _orig(inputs, training=False, **kwargs)

            layer.call = call
            patched.append(layer)

    def restore():
        for layer in patched:
            del layer.call      # back to the class's method
    return restore


def frozen_layers(model, patterns) -> set:
    """Names of the layers matching the --freeze patterns (fnmatch); a pattern matching no layer is an error."""
    from fnmatch import fnmatchcase

    names = [l.name for l in model.layers]
    out = set()
    for pat in patterns:
        hit = [n for n in names if fnmatchcase(n, pat)]
        if not hit:
            raise AdderFlowError(f"--freeze: no layer matches '{pat}' in model {model.name}")
        out.update(hit)
    return out


def standardize_batchnorm(model, x_float) -> int:
    """Re-centre every BatchNorm (inference form y = g/sqrt(v+eps) (x - m) + b) on the mean mu and variance
    s2 of its input over `x_float`: m' = mu, v' = s2, g' = g sqrt(s2+eps)/sqrt(v+eps), b' = b + g (mu - m)/
    sqrt(v+eps). The function is the same (up to float rounding); returns the number of layers changed.

    Why: a model initialised from a QNet carries each requant as a BN with m = 0, v = 1 - eps and the whole
    multiplier in gamma. On the adder outputs (hundreds, far from zero mean) that parametrisation makes the
    gamma gradients ~10^3 times the gammas (measured on ResNet-20 W3: |g| 2200 vs |gamma| 0.3), so the
    first SGD step destroys the network; on standardised inputs they are of the usual size."""
    import tensorflow as tf

    bns = [l for l in model.layers if isinstance(l, tf.keras.layers.BatchNormalization) and l.center and l.scale]
    if not bns or not len(x_float):
        return 0
    probe = tf.keras.Model(model.inputs, [l.input for l in bns])
    n = np.zeros(len(bns))
    s1 = [np.zeros(l.input.shape[-1]) for l in bns]
    s2 = [np.zeros(l.input.shape[-1]) for l in bns]
    for i in range(0, len(x_float), 128):
        outs = probe(x_float[i:i + 128], training=False)
        for k, o in enumerate(outs if isinstance(outs, (list, tuple)) else [outs]):
            f = np.asarray(o, np.float64).reshape(-1, o.shape[-1])
            n[k] += len(f)
            s1[k] += f.sum(0)
            s2[k] += (f * f).sum(0)
    for k, l in enumerate(bns):
        gamma, beta, mean, var = (np.asarray(w, np.float64) for w in l.get_weights())
        eps = float(l.epsilon)
        mu = s1[k] / n[k]
        s2_ = np.maximum(s2[k] / n[k] - mu * mu, eps)    # a constant channel keeps a positive variance
        gain = gamma / np.sqrt(var + eps)
        l.set_weights([w.astype(l.dtype) for w in (gain * np.sqrt(s2_ + eps), beta + gain * (mu - mean), mu, s2_)])
    return len(bns)


class _Stream:
    """Batches as one stream of permutations: an epoch of `steps` batches continues where the last stopped."""

    def __init__(self, n: int, batch: int, rng: np.random.Generator):
        self.n, self.batch, self.rng = n, batch, rng
        self.order = rng.permutation(n)
        self.pos = 0

    def next(self) -> np.ndarray:
        take = []
        need = self.batch
        while need:
            if self.pos == self.n:
                self.order, self.pos = self.rng.permutation(self.n), 0
            chunk = self.order[self.pos:self.pos + need]
            self.pos += len(chunk)
            need -= len(chunk)
            take.append(chunk)
        return np.concatenate(take)


def _atomic_savez(path: Path, arrays: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    os.replace(tmp, path)


def _accuracy(model, x_uint8, y, preprocess, batch) -> float:
    correct = 0
    for i in range(0, len(x_uint8), batch):
        logits = np.asarray(model(preprocess(x_uint8[i:i + batch]), training=False))
        correct += int((logits.argmax(1) == y[i:i + batch]).sum())
    return correct / len(y)


def train_qat(model, cfg: QATConfig, out, preprocess=None, export=None, golden=None, resume: bool = False,
              force: bool = False,
              progress: bool = True, log: bool = True, on_epoch_end=None) -> dict:
    """Fine-tune `model` (a Keras model, fake-quant forward) on the training part of `cfg.data`.

    out:        the run folder: checkpoints/ while training, then qnet/, summary.json and the completion
                marker of flow.outputs. It is the working folder a resume needs, so it is written in place;
                an existing non-empty one is refused unless `resume` or `force` (then it is removed, but only
                once the data and the model are ready).
    preprocess: uint8 NHWC images -> what the model takes (default: the float recipe of flow.data).
    export:     model -> flow.qnet.QNet (flow.qat.export_qnet); None writes no qnet/.
    golden:     (qnet, images_uint8, labels) -> accuracy (flow.qat.golden_accuracy): the exported QNet is
                scored on the validation split too, which shows that the export kept what was selected.
    resume:     continue from the last checkpoint in out/checkpoints (same steps, learning rates, batches).
    on_epoch_end(epoch, record): called after each epoch's checkpoint is on disk (tests interrupt here).
    Returns the summary (also written to out/summary.json).
    """
    import tensorflow as tf
    from tqdm import tqdm

    from flow.data import dataset_kind
    from flow.train import augment_crop_flip

    cfg.check()
    out = Path(out)
    check_run_folder(out, resume, force)
    preprocess = preprocess or default_preprocess
    x_train, y_train, x_val, y_val = load_split(cfg)
    augment = cfg.augment if cfg.augment is not None else (
        dataset_kind(x_train) == "cifar10" and x_train.shape[1:3] == (32, 32))
    steps = cfg.steps_per_epoch or math.ceil(len(x_train) / cfg.batch_size)
    total_steps = cfg.epochs * steps
    config = asdict(cfg)
    config["augment"] = bool(augment)

    tf.keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    if cfg.bn_standardize and not resume:   # a resumed model gets its (standardised) weights from the checkpoint
        standardize_batchnorm(model, preprocess(x_train[:cfg.bn_standardize]))
    frozen = frozen_layers(model, cfg.freeze)
    if cfg.adder_gradient is not None:
        from flow.layers.adder import ADDER_GRADIENTS, AdderConv2D

        if cfg.adder_gradient not in ADDER_GRADIENTS:
            raise AdderFlowError(f"--adder-gradient must be one of {ADDER_GRADIENTS}, got '{cfg.adder_gradient}'")
        for layer in model.layers:
            if isinstance(layer, AdderConv2D):
                layer.adder_gradient = cfg.adder_gradient   # read when the step is traced
    stream = _Stream(len(x_train), cfg.batch_size, rng)
    schedule = tf.keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=total_steps, alpha=0.0)
    optimizer = tf.keras.optimizers.SGD(learning_rate=schedule, momentum=cfg.momentum)
    variables = [v for l in model.layers if l.name not in frozen for v in l.trainable_weights]
    optimizer.build(variables)      # slots exist now: a checkpoint restores them by position
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    wd = tf.constant(cfg.weight_decay, tf.float32)

    history: list = []
    start_epoch = 0
    ckpt_dir = out / CHECKPOINTS
    if not resume and out.exists():
        shutil.rmtree(out)      # checked above: empty, or --force
    if resume:
        last = latest_checkpoint(out)
        state = json.loads((last / _STATE).read_text())
        check_same_run(state["config"], config, last)
        with np.load(last / _ARRAYS) as f:
            weights = [f[f"w{i}"] for i in range(int(f["n_weights"]))]
            slots = [f[f"o{i}"] for i in range(int(f["n_slots"]))]
            stream.order, stream.pos = f["order"], int(f["pos"])
        _set_weights(model, weights, last)
        if len(slots) != len(optimizer.variables):
            raise AdderFlowError(f"{last}: {len(slots)} optimizer variables saved, the model has "
                                 f"{len(optimizer.variables)}")
        for v, a in zip(optimizer.variables, slots):
            v.assign(a)
        rng.bit_generator.state = state["rng"]
        history, best, start_epoch = state["history"], state["best"], state["epoch"]
        if log:
            print(f"resuming after epoch {start_epoch}/{cfg.epochs} from {last}", flush=True)

    # a training call (flow.qat's layers carry gradients only there); "frozen" keeps BatchNorm on its moving
    # statistics inside it (see _bn_inference)
    restore = _bn_inference(model) if cfg.bn_stats == "frozen" else (lambda: None)

    @tf.function(reduce_retracing=True, autograph=False)
    def step(xb, yb):
        with tf.GradientTape() as tape:
            logits = model(xb, training=True)
            loss = loss_fn(yb, logits)
        grads = tape.gradient(loss, variables)
        grads = [g + tf.cast(wd, v.dtype) * v for g, v in zip(grads, variables)]  # BN layers may be float64
        optimizer.apply_gradients(zip(grads, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int64), yb), tf.int32))
        return loss, correct

    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        # the starting point (the PTQ solution) is a candidate too: QAT that does not help exports the start
        init_acc = _accuracy(model, x_val, y_val, preprocess, cfg.eval_batch_size)
        best = {"epoch": 0, "val_accuracy": init_acc, "init_val_accuracy": init_acc}
        _atomic_savez(ckpt_dir / BEST_WEIGHTS, {f"w{i}": w for i, w in enumerate(model.get_weights())})
        if log:
            print(f"epoch 0 (start): val acc {init_acc:.4f} on {len(y_val)} held-out training images", flush=True)
    for epoch in range(start_epoch, cfg.epochs):
        tf.random.set_seed(cfg.seed * 1000 + epoch)  # TF-side randomness (if a layer has any) restarts per epoch
        t0 = time.perf_counter()
        seen = correct_sum = 0
        loss_sum = 0.0
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", disable=not progress,
                   leave=False)
        for _ in bar:
            idx = stream.next()
            xb = x_train[idx]
            if augment:
                xb = augment_crop_flip(xb, rng)
            loss, correct = step(tf.constant(preprocess(xb)), tf.constant(y_train[idx]))
            seen += len(idx)
            correct_sum += int(correct)
            loss_sum += float(loss) * len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct_sum / seen:.3f}")
        bar.close()
        train_seconds = time.perf_counter() - t0
        val_acc = _accuracy(model, x_val, y_val, preprocess, cfg.eval_batch_size)
        record = {"epoch": epoch + 1, "steps": steps, "loss": loss_sum / seen, "train_accuracy": correct_sum / seen,
                  "val_accuracy": val_acc, "lr_end": float(schedule((epoch + 1) * steps)),
                  "seconds": round(time.perf_counter() - t0, 2), "train_seconds": round(train_seconds, 2)}
        history.append(record)
        if val_acc > best["val_accuracy"]:
            best = {**best, "epoch": epoch + 1, "val_accuracy": val_acc}
            _atomic_savez(ckpt_dir / BEST_WEIGHTS, {f"w{i}": w for i, w in enumerate(model.get_weights())})
        _save_checkpoint(ckpt_dir, epoch + 1, model, optimizer, stream, rng, config, history, best)
        if log:
            print(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.4f}  train acc {record['train_accuracy']:.4f}"
                  f"  val acc {val_acc:.4f}  ({record['seconds']:.1f} s)", flush=True)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, record)

    restore()
    with np.load(ckpt_dir / BEST_WEIGHTS) as f:
        _set_weights(model, [f[f"w{i}"] for i in range(len(f.files))], ckpt_dir / BEST_WEIGHTS)
    summary = {"config": config, "history": history, "best_epoch": best["epoch"],
               "best_val_accuracy": best["val_accuracy"], "init_val_accuracy": best["init_val_accuracy"],
               "train_n": int(len(x_train)), "val_n": int(len(x_val)),
               "val_source": f"{cfg.val_split:g} of the training split of {cfg.data} (seed {VAL_SPLIT_SEED})",
               "steps_per_epoch": steps, "total_steps": total_steps,
               "schedule": f"cosine from {cfg.lr} to 0 over {total_steps} steps",
               "weight_decay_mode": "coupled L2 added to gradients before momentum (as torch SGD)",
               "seconds_per_epoch": round(float(np.mean([h["seconds"] for h in history])), 2),
               "seconds": round(float(sum(h["seconds"] for h in history)), 2)}
    if export is not None:
        qnet = export(model)
        summary["qnet"] = QNET_DIR
        if golden is not None:
            summary["golden_val_accuracy"] = float(golden(qnet, x_val, y_val))
        _replace_dir(out / QNET_DIR, lambda tmp: qnet.save(tmp))
    tmp = out / f".{SUMMARY}.tmp"
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    os.replace(tmp, out / SUMMARY)
    from flow.outputs import write_marker

    write_marker(out)
    return summary


def check_run_folder(out: Path, resume: bool, force: bool) -> None:
    """The run folder may be new/empty, or resumed (it has a checkpoint and is not finished), or replaced
    with force; anything else is one line, before anything is loaded or written."""
    from flow.outputs import MARKER

    out = Path(out)
    if resume and force:
        raise AdderFlowError("--resume and --force contradict each other (continue the run, or replace it)")
    if out.exists() and not out.is_dir():
        raise AdderFlowError(f"--out {out} is a file, but the QAT run folder is a directory")
    if resume:
        if latest_checkpoint(out) is None:
            raise AdderFlowError(f"--resume: no checkpoint in {out / CHECKPOINTS} (nothing to resume)")
        if (out / MARKER).is_file():
            raise AdderFlowError(f"--resume: the run in {out} is complete already (pass --force to train it again)")
    elif out.exists() and any(out.iterdir()) and not force:
        hint = " or --resume to continue it" if latest_checkpoint(out) is not None else ""
        raise AdderFlowError(f"--out {out} exists and is not empty; pass --force to replace it{hint}")


def check_resume(out, cfg: QATConfig) -> None:
    """Before the (long) model initialisation: the last checkpoint was written by a run with these settings."""
    last = latest_checkpoint(out)
    if last is not None:
        now = asdict(cfg)
        saved = dict(json.loads((last / _STATE).read_text())["config"])
        if now["augment"] is None:      # resolved from the data in train_qat; compared there
            saved["augment"] = None
        check_same_run(saved, now, last)


def check_same_run(saved: dict, now: dict, where) -> None:
    """A resume must repeat the run's settings (QATConfig fields and `extra`); one line names the first that differs."""
    for k in _RESUME_KEYS + ("extra",):
        if saved.get(k) != now.get(k):
            raise AdderFlowError(f"--resume: {where} was written with {k}={saved.get(k)!r}, this run has "
                                 f"{now.get(k)!r} (resume with the same settings, or start over with --force)")


def _set_weights(model, weights, source) -> None:
    try:
        model.set_weights(weights)
    except ValueError as exc:
        raise AdderFlowError(f"{source}: weights do not fit the model ({str(exc).splitlines()[0][:160]})") from None


def _save_checkpoint(ckpt_dir: Path, epoch: int, model, optimizer, stream, rng, config, history, best) -> None:
    final = ckpt_dir / f"epoch_{epoch:03d}"
    tmp = ckpt_dir / f".epoch_{epoch:03d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i}": v.numpy() for i, v in enumerate(optimizer.variables)})
    arrays.update(n_weights=len(model.get_weights()), n_slots=len(optimizer.variables), order=stream.order,
                  pos=stream.pos)
    with open(tmp / _ARRAYS, "wb") as fh:
        np.savez(fh, **arrays)
    state = {"epoch": epoch, "config": config, "history": history, "best": best, "rng": rng.bit_generator.state}
    (tmp / _STATE).write_text(json.dumps(state, indent=1, default=int) + "\n")
    shutil.rmtree(final, ignore_errors=True)   # only a half-written folder of this epoch can be here
    os.rename(tmp, final)


def _replace_dir(target: Path, write) -> None:
    """write(tmp) into a sibling folder, then swap it in for `target`."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    write(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.rename(tmp, target)
