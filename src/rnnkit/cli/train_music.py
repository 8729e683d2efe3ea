"""``rnnkit train music``: a recurrent net over piano rolls, as event tokens or frames."""

from __future__ import annotations

import argparse
import dataclasses

from rnnkit.cli.options import (
    add_command_tail,
    add_config_flags,
    add_layer_options,
    add_limit_flags,
    add_train_flags,
    cell_names,
    check_cell_options,
    check_positive,
    check_probability,
    check_training_options,
    config_from_args,
    layer_options_from_args,
    run_training,
    train_config,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "music",
        help="polyphonic music as event tokens or piano-roll frames (Bach chorales, your MIDI)",
        description=(
            "Train a recurrent net on piano rolls from a packaged collection (music21's\n"
            "corpus) or your own MIDI / MusicXML / ABC / Humdrum files: by default as event\n"
            "tokens (note-off, note-on, step; a softmax over the next one, so a chord's notes\n"
            "know each other), or with --representation roll one Bernoulli per pitch of the\n"
            "next frame (Boulanger-Lewandowski et al. 2012). Pieces are split into\n"
            "train/validation/test; the test pieces are scored in frame NLL (nats per frame)\n"
            "and frame accuracy TP/(TP+FP+FN) beside the per-pitch marginal and repeat-the-\n"
            "previous-frame baselines. Writes a run directory: config.json, music.json,\n"
            "split.json, model.safetensors, metrics.jsonl, trainer_state/, test_metrics.json.\n"
            "Then `rnnkit generate RUN_DIR --bars 16 --out piece.mid`."
        ),
        epilog=(
            "examples:\n"
            "  rnnkit train music --dataset bach-chorales --time-budget 240 --out runs/bach\n"
            "  rnnkit train music --files my_midi/ --cell gru --resolution 0.5 --out runs/mine\n"
            "  rnnkit train music --resume runs/bach --epochs 60"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from rnnkit.tasks.music import SPEC, MusicConfig, MusicData

    data = parser.add_argument_group("data")
    add_config_flags(data.add_mutually_exclusive_group(), MusicData, ["dataset", "files"])
    names = [f.name for f in dataclasses.fields(MusicData) if f.name not in ("dataset", "files")]
    add_config_flags(data, MusicData, names)
    model = parser.add_argument_group("model")
    add_config_flags(model, MusicConfig, choices={"cell": cell_names()})
    variants = parser.add_argument_group("cell variants and regularisers (rnnkit layers)")
    add_layer_options(variants)
    default = dataclasses.asdict(SPEC.default_train())
    add_train_flags(parser.add_argument_group("optimisation"), defaults=default)
    stop = parser.add_argument_group("length of training (default --epochs 30)")
    add_limit_flags(stop, epochs_help="passes over the training windows")
    add_command_tail(parser.add_argument_group("run"), "music")
    parser.set_defaults(func=run)


def run(args) -> int:
    from rnnkit.tasks.music import SPEC, MusicConfig, MusicData

    check_positive(
        args,
        "--window",
        "--batch-size",
        "--resolution",
        "--max-pieces",
        "--hidden-size",
        "--num-layers",
        "--step-size",
        "--gamma",
        "--plateau-patience",
        "--clip-value",
    )
    check_training_options(args)
    check_probability(args, "--dropout", "--variational-dropout", "--weight-drop", "--zoneout")
    if not args.resume:
        check_cell_options(args, args.cell)

    def make_run():
        data = config_from_args(MusicData, args)
        model = config_from_args(MusicConfig, args, layer_options=layer_options_from_args(args))
        return data, model, train_config(args, SPEC.default_train())

    return run_training(args, "music", make_run)
