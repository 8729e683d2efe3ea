"""``rnnkit train classify``: sequence classification of CSV text or ``.ts`` series."""

from __future__ import annotations

import argparse
import math
import sys

from rnnkit.cli.main import UsageError

# Options that only one cell family takes (checked here so the message names the flag).
CELL_ONLY = {
    "peephole": "lstm",
    "coupled": "lstm",
    "layer_norm": "lstm",
    "proj_size": "lstm",
    "forget_bias": "lstm",
    "reset_after": "gru",
    "nonlinearity": "rnn",
}
LAYER_OPTIONS = (
    "peephole",
    "coupled",
    "layer_norm",
    "proj_size",
    "forget_bias",
    "reset_after",
    "nonlinearity",
    "init",
    "backend",
    "variational_dropout",
    "weight_drop",
    "zoneout",
    "learn_initial_state",
)
LIMITS = ("steps", "epochs", "time_budget")
DEFAULT_EPOCHS = 10


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "classify",
        help="sequence classification of CSV text or .ts series",
        description=(
            "Train a sequence classifier:\n"
            "  (embedding | numeric input) -> optional strided Conv1d -> recurrent layers\n"
            "  -> pooling (last, mean, max, attention) -> linear.\n"
            "Text comes from a CSV file (--csv, --text-column, --label-column), series from\n"
            "UEA/UCR .ts files (--ts-train, --ts-test), or a built-in --dataset. Without a test\n"
            "file a seeded random --test-fraction is the test split; --val-fraction of the rest\n"
            "validates. Writes a run directory (config.json, encoders.json, splits.json,\n"
            "model.safetensors, metrics.jsonl, trainer_state/) and at the end the test split's\n"
            "accuracy, macro-F1 and confusion matrix (test_metrics.json, confusion_test.png).\n"
            f"Default length: --epochs {DEFAULT_EPOCHS}."
        ),
        epilog=(
            "examples (the figures in the README):\n"
            "  rnnkit train classify --dataset rotten-tomatoes --embedding-size 256 --epochs 5 "
            "--out runs/rt\n"
            "  rnnkit train classify --dataset japanese-vowels --out runs/jv\n"
            "  rnnkit train classify --dataset basic-motions --epochs 60 --batch-size 8 "
            "--val-fraction 0 --conv-frontend 32 --conv-kernel-size 5 --conv-stride 2 "
            "--out runs/bm\n"
            "your data:\n"
            "  rnnkit train classify --csv reviews.csv --text-column review --label-column "
            "stars --class-weights --out runs/reviews\n"
            "  rnnkit train classify --ts-train X_TRAIN.ts --ts-test X_TEST.ts --out runs/x\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset",
        choices=("rotten-tomatoes", "japanese-vowels", "basic-motions"),
        help="a dataset shipped in an installed package (see DATASETS.md)",
    )
    data.add_argument("--csv", metavar="FILE", help="CSV file with a header (.gz/.bz2/.xz too)")
    data.add_argument("--test-csv", metavar="FILE", help="CSV test file (default: a random split)")
    data.add_argument("--text-column", default="text", help="default 'text'")
    data.add_argument("--label-column", default="label", help="default 'label'")
    data.add_argument(
        "--skip-label",
        action="append",
        default=[],
        metavar="LABEL",
        help="drop rows with this label (repeatable)",
    )
    data.add_argument(
        "--tokens",
        choices=("word", "char"),
        default="word",
        help="tokenise text by words or characters (default word)",
    )
    data.add_argument(
        "--lowercase",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="lowercase text before tokenising (default on)",
    )
    data.add_argument(
        "--min-freq",
        type=int,
        default=2,
        help="tokens seen fewer times in training become <unk> (default 2)",
    )
    data.add_argument("--max-length", type=int, help="keep the first N tokens of each text")
    data.add_argument(
        "--embeddings",
        metavar="FILE",
        help="pretrained word vectors, word2vec text or binary format",
    )
    data.add_argument(
        "--freeze-embeddings",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="keep the embeddings fixed (default: fine-tune)",
    )
    data.add_argument("--ts-train", metavar="FILE", help="UEA/UCR .ts training file")
    data.add_argument("--ts-test", metavar="FILE", help="UEA/UCR .ts test file")
    data.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="fraction of the training examples held out for validation (default 0.1; 0 = none)",
    )
    data.add_argument(
        "--test-fraction",
        type=float,
        default=0.1,
        help="random test split when no test file is given (default 0.1)",
    )
    data.add_argument("--batch-size", type=int, default=32, help="default 32")
    data.add_argument(
        "--class-weights",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="weight the loss by inverse class frequency (imbalanced data)",
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--cell",
        choices=("lstm", "gru", "rnn", "irnn"),
        default="lstm",
        help="recurrent cell (default lstm)",
    )
    model.add_argument(
        "--embedding-size",
        type=int,
        help="text: embedding size (default 128, or the --embeddings file's)",
    )
    model.add_argument("--hidden-size", type=int, default=128, help="default 128")
    model.add_argument("--num-layers", type=int, default=1, help="default 1")
    model.add_argument(
        "--bidirectional",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="read sequences both ways (default on)",
    )
    model.add_argument(
        "--pooling",
        choices=("last", "mean", "max", "attention"),
        default="max",
        help="sequence summary fed to the classifier (default max)",
    )
    model.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        help="dropout between stacked recurrent layers (default 0)",
    )
    model.add_argument(
        "--input-dropout",
        type=float,
        help="dropout on embeddings / inputs (default 0.3 text, 0 series)",
    )
    model.add_argument(
        "--token-dropout",
        type=float,
        default=0.0,
        help="text: replace whole tokens by <unk> with this probability in training (default 0)",
    )
    model.add_argument(
        "--output-dropout",
        type=float,
        default=0.5,
        help="dropout on the pooled vector (default 0.5)",
    )
    model.add_argument(
        "--conv-frontend",
        type=int,
        default=0,
        metavar="CHANNELS",
        help="Conv1d+ReLU with this many channels before the RNN (default 0: off)",
    )
    model.add_argument("--conv-kernel-size", type=int, default=3, help="default 3")
    model.add_argument(
        "--conv-stride",
        type=int,
        default=1,
        help="stride: shortens sequences by this factor (default 1)",
    )
    variants = parser.add_argument_group("cell variants and regularisers (rnnkit layers)")
    variants.add_argument(
        "--peephole",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="LSTM peephole connections",
    )
    variants.add_argument(
        "--coupled",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="LSTM with coupled input and forget gates",
    )
    variants.add_argument(
        "--layer-norm",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="layer-normalised LSTM",
    )
    variants.add_argument("--proj-size", type=int, help="LSTM projection size")
    variants.add_argument("--forget-bias", type=float, help="LSTM forget-gate bias added")
    variants.add_argument(
        "--reset-after",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="GRU reset gate after the matmul (torch's form)",
    )
    variants.add_argument("--nonlinearity", help="Elman RNN nonlinearity: tanh, relu, ...")
    variants.add_argument("--init", help="initialiser name: rnnkit, torch, identity, ...")
    variants.add_argument(
        "--backend",
        choices=("auto", "native", "fused", "reference"),
        help="how sequences run (default auto)",
    )
    variants.add_argument(
        "--variational-dropout",
        type=float,
        help="same dropout mask at every time step between layers",
    )
    variants.add_argument("--weight-drop", type=float, help="DropConnect on recurrent weights")
    variants.add_argument("--zoneout", type=float, help="zoneout probability")
    variants.add_argument(
        "--learn-initial-state",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="learn the initial hidden state",
    )

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--optimizer", choices=("adam", "adamw", "sgd"), default="adam")
    opt.add_argument("--lr", type=float, default=2e-3, help="peak learning rate (default 2e-3)")
    opt.add_argument("--weight-decay", type=float, default=0.0)
    opt.add_argument(
        "--clip-norm",
        type=float,
        default=1.0,
        help="clip the global gradient norm (default 1.0; 0 turns it off)",
    )
    opt.add_argument(
        "--schedule",
        choices=("constant", "cosine", "step", "plateau"),
        default="cosine",
        help="learning-rate schedule (default cosine)",
    )
    opt.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up steps")

    stop = parser.add_argument_group("length of training and evaluation")
    stop.add_argument(
        "--epochs",
        type=int,
        help=f"passes over the training split (default {DEFAULT_EPOCHS} when no limit is given)",
    )
    stop.add_argument("--steps", type=int, help="optimiser steps")
    stop.add_argument("--time-budget", type=float, metavar="SECONDS", help="wall-clock seconds")
    stop.add_argument(
        "--eval-every",
        type=int,
        help="evaluate and checkpoint every N steps (default: once per epoch)",
    )
    stop.add_argument(
        "--early-stopping",
        type=int,
        metavar="EVALS",
        help="stop after this many evaluations without a lower validation loss",
    )

    runs = parser.add_argument_group("run")
    runs.add_argument(
        "--out", default="runs/classify", help="run directory (default runs/classify)"
    )
    runs.add_argument("--force", action="store_true", help="replace an existing run at --out")
    runs.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue this run from its last checkpoint (limits may be raised)",
    )
    runs.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    runs.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="progress bar on stderr (default on)",
    )
    parser.set_defaults(func=run)


def _check(args) -> None:
    def positive(flag, value):
        if value is not None and (not math.isfinite(value) or value <= 0):
            raise UsageError(f"{flag} must be > 0, got {value}")

    for flag in (
        "--batch-size",
        "--min-freq",
        "--max-length",
        "--embedding-size",
        "--hidden-size",
        "--num-layers",
        "--lr",
        "--eval-every",
        "--time-budget",
        "--epochs",
        "--steps",
        "--early-stopping",
        "--conv-kernel-size",
        "--conv-stride",
    ):
        positive(flag, getattr(args, flag[2:].replace("-", "_")))
    for flag in ("--weight-decay", "--warmup-steps", "--seed", "--clip-norm", "--conv-frontend"):
        value = getattr(args, flag[2:].replace("-", "_"))
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"{flag} must be >= 0, got {value}")
    for flag in (
        "--val-fraction",
        "--test-fraction",
        "--dropout",
        "--input-dropout",
        "--output-dropout",
        "--token-dropout",
        "--variational-dropout",
        "--weight-drop",
        "--zoneout",
    ):
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None and not 0 <= value < 1:
            raise UsageError(f"{flag} must be in [0, 1), got {value}")
    if args.val_fraction + args.test_fraction >= 1:
        raise UsageError("--val-fraction + --test-fraction must be < 1")
    family = "rnn" if args.cell == "irnn" else args.cell
    for option, cell in CELL_ONLY.items():
        if getattr(args, option) is not None and family != cell:
            flag = "--" + option.replace("_", "-")
            raise UsageError(f"{flag} applies to --cell {cell} only, got --cell {args.cell}")


def _data(args):
    from rnnkit.tasks.classify import ClassifyData, builtin_dataset

    sources = [f for f in ("dataset", "csv", "ts_train") if getattr(args, f)]
    if len(sources) != 1:
        raise UsageError("give exactly one of --dataset, --csv FILE and --ts-train FILE")
    fields = {}
    if args.dataset:
        fields = builtin_dataset(args.dataset)
    elif args.csv:
        fields = {
            "csv": args.csv,
            "test_csv": args.test_csv,
            "text_column": args.text_column,
            "label_column": args.label_column,
            "skip_labels": args.skip_label,
        }
    else:
        fields = {"ts_train": args.ts_train, "ts_test": args.ts_test}
    text = "csv" in fields
    if not text:
        for flag in ("test_csv", "embeddings"):
            if getattr(args, flag):
                raise UsageError(f"--{flag.replace('_', '-')} applies to CSV text input only")
    elif args.ts_test:
        raise UsageError("--ts-test applies to .ts input (--ts-train) only")
    if text:
        fields.update(
            level=args.tokens,
            lowercase=args.lowercase,
            min_freq=args.min_freq,
            max_length=args.max_length,
            embeddings=args.embeddings,
        )
    try:
        return ClassifyData(
            val_fraction=args.val_fraction,
            test_fraction=args.test_fraction,
            batch_size=args.batch_size,
            class_weights=args.class_weights,
            **fields,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _train_config(args):
    from rnnkit.train import TrainConfig

    limits = {k: getattr(args, k) for k in LIMITS}
    if all(v is None for v in limits.values()):
        limits["epochs"] = DEFAULT_EPOCHS
    try:
        return TrainConfig(
            optimizer=args.optimizer,
            lr=args.lr,
            weight_decay=args.weight_decay,
            clip_norm=args.clip_norm or None,
            schedule=args.schedule,
            warmup_steps=args.warmup_steps,
            eval_every=args.eval_every or 10**9,
            early_stopping=args.early_stopping,
            seed=args.seed,
            **limits,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _model(args, text: bool) -> dict:
    layer_options = {k: getattr(args, k) for k in LAYER_OPTIONS if getattr(args, k) is not None}
    model = {
        "cell": args.cell,
        "hidden_size": args.hidden_size,
        "num_layers": args.num_layers,
        "bidirectional": args.bidirectional,
        "pooling": args.pooling,
        "dropout": args.dropout,
        "input_dropout": args.input_dropout
        if args.input_dropout is not None
        else (0.3 if text else 0.0),
        "output_dropout": args.output_dropout,
        "conv_channels": args.conv_frontend,
        "conv_kernel_size": args.conv_kernel_size,
        "conv_stride": args.conv_stride,
        "layer_options": layer_options,
    }
    if text:
        model["freeze_embeddings"] = args.freeze_embeddings
        model["token_dropout"] = args.token_dropout
        if args.embedding_size is not None:
            model["embedding_size"] = args.embedding_size
    return model


def run(args) -> int:
    from rnnkit.tasks.classify import format_report, resume_classifier, train_classifier
    from rnnkit.train import ProgressBar, TensorBoard

    _check(args)
    callbacks = [ProgressBar()] if args.progress else []
    if TensorBoard.available():
        callbacks.append(TensorBoard())
    if args.resume:
        if args.force:
            raise UsageError("--resume continues a run; it cannot be combined with --force")
        limits = {k: getattr(args, k) for k in LIMITS if getattr(args, k) is not None}
        result, run_dir, report = resume_classifier(args.resume, limits=limits, callbacks=callbacks)
    else:
        data = _data(args)
        config = _train_config(args)
        model = _model(args, data.kind == "text")
        if args.embedding_size is None and not data.embeddings and data.kind == "text":
            model["embedding_size"] = 128
        result, run_dir, report = train_classifier(
            args.out,
            data=data,
            model=model,
            train=config,
            force=args.force,
            callbacks=callbacks,
            eval_per_epoch=args.eval_every is None,
        )
    m = result.metrics
    line = f"{result.stop_reason} after {result.step} steps, {result.elapsed:.0f} s"
    if "val_accuracy" in m:
        line += f"; validation accuracy {m['val_accuracy']:.4f}, macro-F1 {m['val_macro_f1']:.4f}"
    print(line)
    if report:
        print(f"test split: {format_report(report)}")
    print(f"run saved in {run_dir.path}")
    if result.stop_reason == "interrupted":
        print(
            f"interrupted; continue with: rnnkit train classify --resume {run_dir.path}",
            file=sys.stderr,
        )
        return 130
    return 0
