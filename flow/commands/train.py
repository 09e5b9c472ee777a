"""`adderflow train`: train a model with the AdderNet recipe; writes the .keras model and a .json summary.

With --qat: quantization-aware fine-tuning (flow.qat.train) of the official checkpoint or of a PTQ
solution (--init CKPT|QNET_DIR) at --bits / --bits-map; --out is then the run folder (checkpoints/,
qnet/, summary.json) and --resume continues an interrupted run."""

from __future__ import annotations

from pathlib import Path

from flow.errors import AdderFlowError

DEFAULT_QAT_BITS = 4
BITS_RANGE = (2, 8)
# the ops of a QNet / float graph that hold quantized weights (what --bits-map may name)
_KERNEL_KINDS = ("conv2d", "adder2d", "dense")


def add_arguments(parser):
    parser.add_argument("--model", help="resnet20, resnet20_cnn or adder_small (float training; required without --qat)")
    parser.add_argument("--data", required=True,
                        help="'digits' (sklearn, 80/20 split), a train .npz, or a cifar-10-batches-py folder")
    parser.add_argument("--val-data", help="held-out .npz (default: the test split of digits or of a CIFAR folder, "
                                           "or the one *test*.npz beside a *train*.npz)")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--out", required=True, metavar="MODEL.keras|DIR",
                        help="model to write (summary beside it as .json); with --qat the run folder")
    parser.add_argument("--batch-size", type=int, help="default 128 (float), 64 (--qat)")
    parser.add_argument("--lr", type=float, help="initial learning rate of the cosine schedule (default 0.1; "
                                                 "--qat: 0.01, fine-tuning)")
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
    q = parser.add_argument_group("quantization-aware training (--qat)")
    q.add_argument("--qat", action="store_true", help="QAT fine-tuning of --init to a QNet in the --out folder")
    q.add_argument("--init", metavar="CKPT|QNET_DIR",
                   help="official .pth checkpoint (PTQ with `adderflow quantize` defaults first) or a QNet folder")
    q.add_argument("--bits", type=int, default=None, help=f"bits of the adder layers, 2..8 (default {DEFAULT_QAT_BITS})")
    q.add_argument("--bits-map", metavar="LAYER=BITS,...",
                   help="per-layer bits (others: --bits), e.g. layer1_0_conv1=4,fc=8")
    q.add_argument("--val-split", type=float, default=None,
                   help="fraction of the training data held out for model selection (default 0.05)")
    q.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default: one pass over the data)")
    q.add_argument("--calib", help="calibration images for the PTQ start (default: the training split of --data)")
    q.add_argument("--calib-limit", type=int, default=512, help="first N calibration images (default 512, as quantize)")
    q.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    q.add_argument("--freeze", metavar="LAYER,...", help="layers (fnmatch patterns) not trained, e.g. conv1,fc,*bn*")
    q.add_argument("--bn-stats", choices=("frozen", "batch"), default="frozen",
                   help="BatchNorm statistics while training: frozen (inference mode, default) or batch")


def run(args) -> int:
    if args.qat:
        return run_qat(args)
    from flow.outputs import staged_outputs
    from flow.train import TrainConfig, save, summary_path, train

    qat_only = [f"--{n.replace('_', '-')}" for n in ("init", "bits", "bits_map", "val_split", "steps_per_epoch",
                                                       "calib", "resume", "freeze") if getattr(args, n) not in (None, False)]
    if qat_only:
        raise AdderFlowError(f"{', '.join(qat_only)}: only with --qat")
    if not args.model:
        raise AdderFlowError("--model is required (or pass --qat --init CKPT|QNET_DIR)")
    args.batch_size = 128 if args.batch_size is None else args.batch_size
    args.lr = 0.1 if args.lr is None else args.lr
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


def kernel_layers(init) -> dict:
    """{layer name: kind} of the quantizable layers of --init (a .pth/.pt checkpoint or a QNet folder), read
    cheaply (no TensorFlow, no quantization) so that --bits-map is checked before any work."""
    import json

    p = Path(init)
    if not p.exists():
        raise AdderFlowError(f"--init {p}: not found")
    if p.is_dir():
        from flow.qnet import QNET_JSON, QNET_NPZ

        if not (p / QNET_JSON).is_file() or not (p / QNET_NPZ).is_file():
            raise AdderFlowError(f"--init {p}: a QNet folder needs {QNET_JSON} and {QNET_NPZ}")
        try:
            ops = json.loads((p / QNET_JSON).read_text())["ops"]
        except (ValueError, KeyError, TypeError) as exc:
            raise AdderFlowError(f"--init {p / QNET_JSON}: not a QNet file ({type(exc).__name__}: {exc})") from None
        return {o["name"]: o["kind"] for o in ops if o.get("kind") in _KERNEL_KINDS}
    if p.suffix not in (".pth", ".pt"):
        raise AdderFlowError(f"--init {p}: expected a .pth/.pt checkpoint or a QNet folder (qnet.json + qnet.npz)")
    from flow.quant.api import load_graph

    graph = load_graph("resnet20", str(p))
    return {o.name: o.kind for o in graph.ops if o.kind in _KERNEL_KINDS}


def check_bits(value, where: str) -> int:
    lo, hi = BITS_RANGE
    if not isinstance(value, int) or not lo <= value <= hi:
        raise AdderFlowError(f"{where} must be an integer in {lo}..{hi}, got {value}")
    return value


def parse_bits(bits, bits_map, layers: dict):
    """--bits / --bits-map -> what flow.qat.init_model takes: one width, or {'*': --bits, adder layer: bits}.

    Only adder layers take a width here: the first conv and the classifier stay at `adderflow quantize`'s
    8 bits. A downsample adder may be named as in the QNet (layer2_0_downsample) or as the Keras layer
    (layer2_0_downsample_0); the Keras name is passed on."""
    default = check_bits(DEFAULT_QAT_BITS if bits is None else bits, "--bits")
    if not bits_map:
        return default
    adders = {n: n for n, k in layers.items() if k == "adder2d"}
    adders.update({f"{n}_0": f"{n}_0" for n in list(adders) if n.endswith("_downsample")})
    adders.update({n: f"{n}_0" for n in list(adders) if n.endswith("_downsample")})
    chosen = {"*": default}
    for item in bits_map.split(","):
        name, sep, value = item.strip().partition("=")
        name = name.strip()
        if not sep or not name:
            raise AdderFlowError(f"--bits-map: '{item.strip()}' is not LAYER=BITS")
        if name not in adders:
            what = f"{name} is a {layers[name]} layer (it keeps 8 bits); " if name in layers else \
                f"no adder layer '{name}' in the network; "
            raise AdderFlowError(f"--bits-map: {what}adder layers: {', '.join(sorted(set(adders.values()))[:4])}, ...")
        try:
            b = int(value)
        except ValueError:
            raise AdderFlowError(f"--bits-map: {name}={value.strip()} is not an integer bit width") from None
        chosen[adders[name]] = check_bits(b, f"--bits-map {name}")
    return chosen


def run_qat(args) -> int:
    from flow.outputs import check_output
    from flow.qat.train import DEFAULT_VAL_SPLIT, QATConfig, check_resume, check_run_folder, train_qat

    ignored = [f for f, v in (("--model", args.model), ("--weights", args.weights), ("--val-data", args.val_data))
               if v]
    if ignored:
        raise AdderFlowError(f"{', '.join(ignored)}: not used with --qat (the network comes from --init, "
                             "validation is a split of --data)")
    if not args.init:
        raise AdderFlowError("--qat needs --init CKPT|QNET_DIR (the official checkpoint or a PTQ solution)")
    out = Path(args.out)
    check_run_folder(out, args.resume, args.force)
    if not args.resume:   # out, or anything inside it, must not be an input: --force would delete it
        check_output(out, True, inputs=[args.init, args.data, args.calib], kind="dir", what="--out")
    layers = kernel_layers(args.init)
    bits = parse_bits(args.bits, args.bits_map, layers)
    if args.data != "digits" and not Path(args.data).exists():
        raise AdderFlowError(f"data file not found: {args.data}")
    cfg = QATConfig(
        data=args.data, epochs=args.epochs, batch_size=64 if args.batch_size is None else args.batch_size,
        lr=0.01 if args.lr is None else args.lr, weight_decay=args.weight_decay,
        val_split=DEFAULT_VAL_SPLIT if args.val_split is None else args.val_split,
        steps_per_epoch=args.steps_per_epoch, limit=args.limit, seed=args.seed,
        augment=False if args.no_augment else None, bn_stats=args.bn_stats, adder_gradient=args.adder_gradient,
        freeze=[f.strip() for f in args.freeze.split(",") if f.strip()] if args.freeze else [],
        extra={"init": str(Path(args.init).resolve()), "bits": bits,
               "calib": str(Path(args.calib).resolve()) if args.calib else None, "calib_limit": args.calib_limit},
    )
    cfg.check()
    if args.resume:
        check_resume(out, cfg)
    from flow.commands.quantize import load_calibration

    calib = load_calibration(args.calib or args.data, args.calib_limit)
    import flow.qat as qat

    model = qat.init_model(str(args.init), bits, calib)
    summary = train_qat(model, cfg, out, preprocess=qat_preprocess, export=qat.export_qnet,
                        golden=qat.golden_accuracy, resume=args.resume, force=args.force,
                        progress=not args.no_progress)
    golden = summary.get("golden_val_accuracy")
    print(f"QAT of {args.init} at {'W%dA%d' % (bits, bits) if isinstance(bits, int) else 'per-layer bits'}: "
          f"{cfg.epochs} epochs x {summary['steps_per_epoch']} steps ({summary['seconds_per_epoch']:.1f} s/epoch); "
          f"best validation epoch {summary['best_epoch']}: {100 * summary['best_val_accuracy']:.2f}% on "
          f"{summary['val_n']} held-out training images (golden model of the exported QNet: {100 * golden:.2f}%)")
    print(f"wrote {out / 'qnet'} and {out / 'summary.json'}")
    return 0


def qat_preprocess(x_uint8):
    """uint8 images -> what flow.qat's models take: float32 pixel values 0..255 (flow.qat.init_model; the
    model's first layer normalises and quantizes them like the QNet's input)."""
    import numpy as np

    return np.asarray(x_uint8, np.float32)
