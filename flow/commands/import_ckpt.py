"""`adderflow import`: official PyTorch AdderNet checkpoint -> Keras model file (no PyTorch needed)."""

from __future__ import annotations

from pathlib import Path

from flow.errors import AdderFlowError


def add_arguments(parser):
    parser.add_argument("--pytorch", required=True, metavar="CKPT", help="PyTorch checkpoint (.pth, zip or legacy format)")
    parser.add_argument("--model", default="resnet20", help="network the checkpoint holds (default resnet20)")
    parser.add_argument("--out", required=True, metavar="MODEL.keras", help="Keras model file to write (.keras or .h5)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")


def run(args) -> int:
    from flow.checkpoint import load_state_dict
    from flow.models import MODELS
    from flow.outputs import check_output, staged_output

    out = Path(args.out)
    if args.model not in MODELS:
        raise AdderFlowError(f"unknown model '{args.model}' (choose from {', '.join(MODELS)})")
    if out.suffix not in (".keras", ".h5"):
        raise AdderFlowError(f"--out {out}: use a .keras (or .h5) file name")
    check_output(out, args.force, inputs=[args.pytorch], kind="file", what="--out")
    state_dict = load_state_dict(args.pytorch)

    from flow.importer import keras_from_state_dict

    model = keras_from_state_dict(state_dict, args.model, source=str(args.pytorch))
    with staged_output(out, args.force, inputs=[args.pytorch], kind="file", what="--out") as tmp:
        model.save(tmp)
    n_params = sum(int(v.shape.num_elements()) for v in model.weights)
    print(f"imported {args.pytorch} as {args.model}: {len(model.layers)} layers, {n_params} values -> {out}")
    return 0
