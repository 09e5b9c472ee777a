"""`adderflow train`: train a model with the AdderNet recipe; writes the .keras model and a .json summary."""

from __future__ import annotations

from pathlib import Path

from flow.errors import AdderFlowError


def add_arguments(parser):
    parser.add_argument("--model", required=True, help="resnet20, resnet20_cnn or adder_small")
    parser.add_argument("--data", required=True,
                        help="'digits' (sklearn, 80/20 split), a train .npz, or a cifar-10-batches-py folder")
    parser.add_argument("--val-data", help="held-out .npz (default: the test split of digits or of a CIFAR folder, "
                                           "or the one *test*.npz beside a *train*.npz)")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--out", required=True, metavar="MODEL.keras", help="model to write (summary beside it as .json)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=0.1, help="initial learning rate of the cosine schedule")
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--adder-gradient", choices=("addernet", "sign"), default="addernet",
                        help="addernet: full-precision W grad, HardTanh X grad, adaptive scale; sign: exact gradient")
    parser.add_argument("--eta", type=float, default=0.2, help="AdderNet adaptive gradient scale (official 0.2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, help="use the first N training samples")
    parser.add_argument("--no-augment", action="store_true", help="no random crop/flip even for CIFAR")
    parser.add_argument("--weights", help="start from these weights (.pth or .keras) instead of random")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.add_argument("--no-progress", action="store_true")


def run(args) -> int:
    from flow.outputs import staged_outputs
    from flow.train import TrainConfig, save, summary_path, train

    out = Path(args.out)
    if out.suffix not in (".keras", ".h5"):
        raise AdderFlowError(f"--out {out}: use a .keras (or .h5) file name")
    # model and summary: both checked now, written beside their targets, swapped in after training
    staged = staged_outputs([out, summary_path(out)], args.force, what="--out",
                            inputs=[args.data, args.val_data, args.weights])
    cfg = TrainConfig(
        model=args.model, data=args.data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, adder_gradient=args.adder_gradient, eta=args.eta, seed=args.seed,
        augment=False if args.no_augment else None, val_data=args.val_data, limit=args.limit,
        init_weights=args.weights,
    )
    with staged as (tmp_model, tmp_summary):
        model, result = train(cfg, progress=not args.no_progress)
        save(model, result, tmp_model)   # writes tmp_model and summary_path(tmp_model)
        summary_path(tmp_model).replace(tmp_summary)
    from flow.models import is_adder_layer

    rule = f"{args.adder_gradient} gradient" if any(is_adder_layer(l) for l in model.layers) else "no adder layers"
    val = f"{100 * result.val_accuracy:.2f}% on {result.val_n} held-out images" if result.val_accuracy is not None \
        else "no held-out data (pass --val-data)"
    print(f"trained {args.model} ({rule}) for {args.epochs} epochs in {result.seconds:.1f} s: "
          f"train acc {100 * result.train_accuracy:.2f}%, held-out accuracy {val}")
    print(f"wrote {out} and {summary_path(out)}")
    return 0
