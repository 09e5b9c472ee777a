"""`adderflow eval`: accuracy of a float Keras/PyTorch model or of a quantized integer network (qnet.json)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from flow.errors import AdderFlowError


def add_arguments(parser):
    parser.add_argument("--model",
                        help="network architecture (resnet20, resnet20_cnn, adder_small) with --weights, as in every "
                             "command, or a saved .keras model")
    parser.add_argument("--qnet", metavar="DIR",
                        help="a quantized network folder (qnet.json + qnet.npz): the integer golden model, as "
                             "`adderflow hls --qnet`")
    parser.add_argument("--weights", help="weights: PyTorch .pth (no torch needed) or Keras .keras/.h5")
    parser.add_argument("--data", help="a .npz (x uint8 NHWC, y), a cifar-10-batches-py folder, or 'digits' "
                                       "(default: ../shared/data/cifar10_test1k.npz; digits for adder_small)")
    parser.add_argument("--split", choices=("train", "test"), default="test",
                        help="split of a CIFAR folder or of digits (default test)")
    parser.add_argument("--limit", type=int, help="evaluate the first N samples only")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--json", metavar="OUT.json", help="write the result as JSON")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --json file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _default_data(model: str) -> str:
    from flow.paths import shared_dir

    if model == "adder_small":
        return "digits"
    d = shared_dir()
    if d is not None and (d / "data" / "cifar10_test1k.npz").exists():
        return str(d / "data" / "cifar10_test1k.npz")
    raise AdderFlowError("no --data given and ../shared/data/cifar10_test1k.npz is absent")


def run(args) -> int:
    from flow.data import check_fits, check_limit, dataset_kind, load_dataset

    # sizes first: nothing is read or written when a flag is out of range
    check_limit(args.limit, "--limit")
    check_limit(args.batch_size, "--batch-size")
    if bool(args.qnet) == bool(args.model):
        raise AdderFlowError("give --model NAME (with --weights) or --qnet DIR, one of the two")
    if args.model and Path(args.model).is_dir():
        raise AdderFlowError(f"--model takes a network name or a saved .keras model, as in every command; the "
                             f"quantized folder {args.model} is --qnet {args.model}")
    qnet_dir = Path(args.qnet) if args.qnet else None
    is_qnet = qnet_dir is not None
    if is_qnet and not qnet_dir.is_dir():
        raise AdderFlowError(f"--qnet {qnet_dir}: no such folder")
    if is_qnet and not (qnet_dir / "qnet.json").exists():
        raise AdderFlowError(f"{qnet_dir}: folder has no qnet.json (write one with `adderflow quantize`)")
    data = args.data or _default_data(args.model or "resnet20")
    json_out = _check_json_out(args, data)
    x, y = load_dataset(data, split=args.split, limit=args.limit)
    progress = not args.no_progress
    t0 = time.perf_counter()
    if is_qnet:
        from flow import golden, qnet

        try:
            net = qnet.load(qnet_dir)
            check_fits(x, y, net.tensors[net.input].shape, int(np.prod(net.output_spec.shape)), str(data))
            logits = np.asarray(golden.predict(net, x, batch_size=args.batch_size, progress=progress))
        except qnet.QNetError as exc:
            raise AdderFlowError(f"{qnet_dir}: {exc}") from None
        kind, model_label, weights = "integer (golden model)", str(qnet_dir), str(qnet_dir / "qnet.json")
    else:
        from flow.data import preprocess
        from flow.importer import KERAS_SUFFIXES, load_weights_any
        from flow.models import MODELS, predict_logits

        saved = Path(args.model)
        if args.model not in MODELS and saved.suffix in KERAS_SUFFIXES and saved.is_file() and not args.weights:
            model = load_weights_any(None, saved)  # `--model saved.keras`: the file names its network
        else:
            if args.model not in MODELS:
                raise AdderFlowError(f"unknown model '{args.model}' (choose from {', '.join(MODELS)}, "
                                     "or a saved .keras model; a quantized folder is --qnet DIR)")
            if not args.weights:
                raise AdderFlowError("--weights is required with a model name (a .pth or .keras file)")
            model = load_weights_any(args.model, args.weights)
        check_fits(x, y, tuple(model.input_shape[1:]), int(model.output_shape[-1]), str(data))
        logits = predict_logits(model, preprocess(x, dataset_kind(x)), args.batch_size, progress)
        kind, model_label, weights = "float (Keras)", model.name, str(args.weights or args.model)
    seconds = time.perf_counter() - t0
    if logits.shape[0] != len(y):
        raise AdderFlowError(f"model returned {logits.shape[0]} predictions for {len(y)} images")
    pred = logits.argmax(axis=1)
    correct = int((pred == y).sum())
    result = {
        "accuracy": correct / len(y),
        "n": int(len(y)),
        "correct": correct,
        "model": model_label,
        "kind": kind,
        "weights": weights,
        "data": str(data),
        "split": args.split if (data == "digits" or Path(data).is_dir()) else None,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(y) / seconds, 2) if seconds > 0 else None,
    }
    rows = [("model", model_label), ("kind", kind), ("weights", weights), ("data", f"{data} ({len(y)} images)"),
            ("accuracy", f"{100 * result['accuracy']:.2f}% ({correct}/{len(y)})"),
            ("time", f"{seconds:.1f} s ({result['images_per_second']} img/s)")]
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if json_out is not None:
        _write_json(json_out, result, args.force)
    return 0


def _json_inputs(args, data) -> list:
    return [args.model, args.qnet, args.weights, data]


def _check_json_out(args, data):
    """--json is checked before the (long) evaluation: not an input, not a folder, no overwrite without --force."""
    if not args.json:
        return None
    from flow.outputs import check_output

    return check_output(args.json, args.force, inputs=_json_inputs(args, data), kind="file", what="--json")


def _write_json(out: Path, result: dict, force: bool) -> None:
    from flow.outputs import staged_output

    replaced = out.exists()
    with staged_output(out, force, kind="file", what="--json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'replaced' if replaced else 'wrote'} {out}")
