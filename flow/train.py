"""Training with the AdderNet recipe (Chen et al. 2020, official code), as a plain TF training loop.

SGD with momentum 0.9; weight decay 5e-4 added to every trainable tensor's gradient before the
momentum update (coupled L2, as `torch.optim.SGD(weight_decay=...)` does; for adder kernels it is added
after the adaptive gradient scale, like in the official code); cosine learning rate from `lr` to 0 over
all steps; random crop (zero pad 4) + horizontal flip for 32x32 RGB (CIFAR) images, none for digits.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError


@dataclass
class TrainConfig:
    model: str
    data: str
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    adder_gradient: str = "addernet"
    eta: float = 0.2
    seed: int = 0
    augment: bool | None = None  # None: crop+flip for 32x32x3 images only
    val_data: str | None = None
    limit: int | None = None
    init_weights: str | None = None


@dataclass
class TrainResult:
    config: dict
    history: list = field(default_factory=list)
    train_accuracy: float | None = None
    val_accuracy: float | None = None
    val_n: int = 0
    train_n: int = 0
    seconds: float = 0.0


def augment_crop_flip(x_uint8: np.ndarray, rng: np.random.Generator, pad: int = 4) -> np.ndarray:
    """Random crop of the zero-padded image back to its size, and a random horizontal flip (per image)."""
    n, h, w, _ = x_uint8.shape
    padded = np.pad(x_uint8, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    dy = rng.integers(0, 2 * pad + 1, size=n)
    dx = rng.integers(0, 2 * pad + 1, size=n)
    out = np.empty_like(x_uint8)
    flips = rng.random(n) < 0.5
    for i in range(n):
        img = padded[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
        out[i] = img[:, ::-1] if flips[i] else img
    return out


def _val_source(cfg: TrainConfig):
    """Held-out data: --val-data, else the test split of digits or of a CIFAR batches folder, else the one
    *test*.npz beside a *train*.npz."""
    if cfg.val_data:
        return cfg.val_data, "test"
    if cfg.data == "digits" or Path(cfg.data).is_dir():
        return cfg.data, "test"
    from flow.data import find_split_files

    try:
        train_file, test_file = find_split_files(Path(cfg.data).parent)
    except AdderFlowError:
        return None, None
    if train_file.resolve() == Path(cfg.data).resolve():
        return str(test_file), "test"
    return None, None


def train(cfg: TrainConfig, out: Path | None = None, progress: bool = True,
          log: bool = True) -> tuple[object, TrainResult]:
    """Train `cfg.model` on `cfg.data`; returns (keras model, result). Writes nothing unless `out` is given.

    `progress` shows a tqdm bar per epoch, `log` prints one line per epoch."""
    import tensorflow as tf
    from tqdm import tqdm

    from flow.data import dataset_kind, load_dataset, preprocess
    from flow.layers.adder import ADDER_GRADIENTS
    from flow.models import MODELS, build_model, predict_logits

    if cfg.model not in MODELS:
        raise AdderFlowError(f"unknown model '{cfg.model}' (choose from {', '.join(MODELS)})")
    if cfg.adder_gradient not in ADDER_GRADIENTS:
        raise AdderFlowError(f"--adder-gradient must be one of {ADDER_GRADIENTS}, got '{cfg.adder_gradient}'")
    if cfg.epochs <= 0 or cfg.batch_size <= 0 or cfg.lr <= 0:
        raise AdderFlowError("--epochs, --batch-size and --lr must be positive")
    x_train, y_train = load_dataset(cfg.data, split="train", limit=cfg.limit)
    val_path, val_split = _val_source(cfg)
    x_val, y_val = load_dataset(val_path, split=val_split) if val_path else (None, None)
    kind = dataset_kind(x_train)
    augment = cfg.augment if cfg.augment is not None else (kind == "cifar10" and x_train.shape[1:3] == (32, 32))
    num_classes = int(max(y_train.max(), y_val.max() if y_val is not None else 0)) + 1
    num_classes = max(num_classes, 10)

    tf.keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_model(cfg.model, input_shape=x_train.shape[1:], num_classes=num_classes,
                        adder_gradient=cfg.adder_gradient, eta=cfg.eta)
    if cfg.init_weights:
        from flow.importer import load_weights_any

        init = load_weights_any(cfg.model, cfg.init_weights)
        try:
            model.set_weights(init.get_weights())
        except ValueError as exc:
            raise AdderFlowError(f"{cfg.init_weights}: weights do not fit {cfg.model} on inputs "
                                 f"{x_train.shape[1:]} ({str(exc).splitlines()[0][:160]})") from None

    steps_per_epoch = math.ceil(len(x_train) / cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    schedule = tf.keras.optimizers.schedules.CosineDecay(cfg.lr, decay_steps=total_steps, alpha=0.0)
    optimizer = tf.keras.optimizers.SGD(learning_rate=schedule, momentum=cfg.momentum)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    wd = tf.constant(cfg.weight_decay, tf.float32)

    @tf.function(reduce_retracing=True, autograph=False)  # no Python control flow to convert
    def step(xb, yb):
        with tf.GradientTape() as tape:
            logits = model(xb, training=True)
            loss = loss_fn(yb, logits)
        grads = tape.gradient(loss, variables)
        grads = [g + wd * v for g, v in zip(grads, variables)]
        optimizer.apply_gradients(zip(grads, variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int64), yb), tf.int32))
        return loss, correct

    result = TrainResult(config=asdict(cfg), train_n=len(x_train))
    result.config["augment"] = bool(augment)
    result.config["val_data"] = val_path
    result.config["schedule"] = f"cosine from {cfg.lr} to 0 over {total_steps} steps"
    result.config["weight_decay_mode"] = "coupled L2 added to gradients before momentum (as torch SGD)"
    t_start = time.perf_counter()
    for epoch in range(cfg.epochs):
        t0 = time.perf_counter()
        order = rng.permutation(len(x_train))
        seen = correct_sum = 0
        loss_sum = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                   disable=not progress, leave=False)
        for s in bar:
            idx = order[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            xb = x_train[idx]
            if augment:
                xb = augment_crop_flip(xb, rng)
            loss, correct = step(tf.constant(preprocess(xb, kind)), tf.constant(y_train[idx]))
            seen += len(idx)
            correct_sum += int(correct)
            loss_sum += float(loss) * len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct_sum / seen:.3f}")
        bar.close()
        record = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_accuracy": correct_sum / seen,
                  "lr_end": float(schedule(min((epoch + 1) * steps_per_epoch, total_steps))),
                  "seconds": round(time.perf_counter() - t0, 2)}
        result.history.append(record)
        if log:
            print(f"epoch {epoch + 1}/{cfg.epochs}: loss {record['loss']:.4f}  train acc {record['train_accuracy']:.4f}"
                  f"  ({record['seconds']:.1f} s)", flush=True)
    result.train_accuracy = result.history[-1]["train_accuracy"]
    if x_val is not None:
        logits = predict_logits(model, preprocess(x_val, kind), batch_size=max(cfg.batch_size, 100))
        result.val_accuracy = float((logits.argmax(1) == y_val).mean())
        result.val_n = int(len(y_val))
    result.seconds = round(time.perf_counter() - t_start, 2)
    if out is not None:
        save(model, result, out)
    return model, result


def summary_path(out: Path) -> Path:
    return out.with_suffix(".json")


def save(model, result: TrainResult, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    summary_path(out).write_text(json.dumps(asdict(result), indent=2) + "\n")
