"""``rnnkit train classify``: sequence classification of CSV text or ``.ts`` series."""

from __future__ import annotations

import argparse
import sys

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import (
    CELLS,
    add_layer_options,
    add_optimisation_options,
    add_run_options,
    add_stopping_options,
    check_cell_options,
    check_non_negative,
    check_positive,
    check_probability,
    check_resume,
    check_training_options,
    layer_options_from_args,
    limits_from_args,
    train_config_from_args,
)

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
        choices=CELLS,
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
    add_layer_options(variants)
    add_optimisation_options(parser.add_argument_group("optimisation"), lr=2e-3, clip_norm=1.0)
    add_stopping_options(
        parser.add_argument_group("length of training and evaluation"),
        what=f"passes over the training split (default {DEFAULT_EPOCHS} when no limit is given)",
        eval_help="evaluate and checkpoint every N steps (default: once per epoch)",
        early_help="stop after this many evaluations without a lower validation loss",
    )
    add_run_options(parser.add_argument_group("run"), default_out="runs/classify", resume=True)
    parser.set_defaults(func=run)


def _check(args) -> None:
    check_positive(
        args,
        "--batch-size",
        "--min-freq",
        "--max-length",
        "--embedding-size",
        "--hidden-size",
        "--num-layers",
        "--conv-kernel-size",
        "--conv-stride",
    )
    check_training_options(args)
    check_non_negative(args, "--conv-frontend")
    check_probability(
        args,
        "--val-fraction",
        "--test-fraction",
        "--dropout",
        "--input-dropout",
        "--output-dropout",
        "--token-dropout",
        "--variational-dropout",
        "--weight-drop",
        "--zoneout",
    )
    if args.val_fraction + args.test_fraction >= 1:
        raise UsageError("--val-fraction + --test-fraction must be < 1")
    check_cell_options(args, args.cell)


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


def _model(args, text: bool) -> dict:
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
        "layer_options": layer_options_from_args(args),
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
        check_resume(args)
        limits = limits_from_args(args)
        result, run_dir, report = resume_classifier(args.resume, limits=limits, callbacks=callbacks)
    else:
        data = _data(args)
        config = train_config_from_args(args, {"epochs": DEFAULT_EPOCHS})
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
