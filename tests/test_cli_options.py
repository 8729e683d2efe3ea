"""Shared option groups of the ``rnnkit train <task>`` commands (rnnkit.cli.options)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from rnnkit.cli.main import UsageError
from rnnkit.cli.options import (
    LAYER_OPTIONS,
    add_command_tail,
    add_config_flags,
    add_layer_options,
    add_limit_flags,
    add_train_flags,
    check_cell_options,
    check_non_negative,
    check_positive,
    check_probability,
    check_resume,
    check_training_options,
    config_from_args,
    layer_options_from_args,
    limits_from_args,
    train_config,
)
from rnnkit.config import Config
from rnnkit.train import TrainConfig


def _parser(**train_defaults) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_layer_options(parser)
    add_train_flags(parser, defaults={"lr": 2e-3, "clip_norm": 1.0, **train_defaults})
    add_limit_flags(parser)
    add_command_tail(parser, "x")
    return parser


def _help_of(parser, flag):
    return next(a.help for a in parser._actions if flag in a.option_strings)


def test_defaults_and_help_carry_the_task_values():
    parser = _parser(lr=5e-3, clip_norm=5.0, schedule="constant")
    args = parser.parse_args([])
    assert (args.lr, args.clip_norm, args.schedule, args.optimizer) == (
        5e-3,
        5.0,
        "constant",
        "adam",
    )
    assert (args.out, args.seed, args.resume, args.progress, args.force, args.json) == (
        None,
        0,
        None,
        True,
        False,
        False,
    )
    assert args.threads is None
    assert all(getattr(args, name) is None for name in LAYER_OPTIONS)
    assert _help_of(parser, "--lr") == "peak learning rate (default 5e-3)"
    assert (
        _help_of(parser, "--clip-norm")
        == "clip the global gradient norm (0 turns it off) (default 5)"
    )
    assert _help_of(parser, "--schedule") == "learning-rate schedule (default constant)"
    assert _help_of(parser, "--out") == "run directory (default runs/x)"


@dataclass
class _Options(Config):
    size: int = field(default=3, metadata={"help": "how many"})
    rate: float | None = field(default=None, metadata={"help": "how fast", "metavar": "R"})
    kind: str = field(default="a", metadata={"help": "which", "choices": ("a", "b")})
    on: bool = field(default=True, metadata={"help": "whether"})
    hidden: dict = field(default_factory=dict, metadata={"flag": False})


def test_flags_are_generated_from_a_config_dataclass():
    parser = argparse.ArgumentParser()
    add_config_flags(parser, _Options, defaults={"size": 5})
    assert not any("--hidden" in a.option_strings for a in parser._actions)
    assert _help_of(parser, "--size") == "how many (default 5)"
    assert _help_of(parser, "--on") == "whether (default on)"
    args = parser.parse_args(["--rate", "0.5", "--kind", "b", "--no-on"])
    options = config_from_args(_Options, args, hidden={"x": 1})
    assert options == _Options(size=5, rate=0.5, kind="b", on=False, hidden={"x": 1})
    with pytest.raises(SystemExit):
        parser.parse_args(["--kind", "c"])


def test_optional_flags_can_be_left_out_or_renamed():
    parser = argparse.ArgumentParser()
    add_layer_options(parser, ("backend", "init"), help={"init": "encoder initialiser"})
    add_train_flags(parser, ("lr", "clip_norm", "eval_every"), defaults={"lr": 1e-2})
    add_limit_flags(parser)
    add_command_tail(parser, "y", resume=False)
    args = parser.parse_args(["--threads", "2", "--init", "torch"])
    assert not hasattr(args, "optimizer") and not hasattr(args, "warmup_steps")
    assert not hasattr(args, "peephole") and not hasattr(args, "resume")
    assert args.threads == 2
    assert _help_of(parser, "--init") == "encoder initialiser"
    assert _help_of(parser, "--lr") == "peak learning rate (default 1e-2)"
    assert layer_options_from_args(args) == {"init": "torch"}
    config = train_config(args, TrainConfig(steps=10), ("lr", "clip_norm", "eval_every"))
    assert config.optimizer == "adam" and config.warmup_steps == 0  # TrainConfig defaults
    assert (config.lr, config.steps) == (1e-2, 10)


def test_layer_options_keep_given_values_only():
    args = _parser().parse_args(["--no-peephole", "--proj-size", "4", "--forget-bias", "0"])
    assert layer_options_from_args(args) == {"peephole": False, "proj_size": 4, "forget_bias": 0.0}


def test_train_config_from_the_flags_and_the_task_default():
    args = _parser().parse_args(
        ["--optimizer", "sgd", "--lr", "0.1", "--clip-norm", "0", "--warmup-steps", "3"]
    )
    config = train_config(args, TrainConfig(epochs=10))
    assert (config.optimizer, config.lr, config.clip_norm, config.warmup_steps) == (
        "sgd",
        0.1,
        None,
        3,
    )
    assert (config.epochs, config.steps, config.time_budget) == (10, None, None)
    args = _parser().parse_args(["--steps", "7", "--eval-every", "2"])
    config = train_config(args, TrainConfig(epochs=10, time_budget=60.0))
    assert (config.epochs, config.steps, config.time_budget, config.eval_every) == (
        None,
        7,
        None,
        2,
    )
    assert limits_from_args(args) == {"steps": 7}
    with pytest.raises(UsageError):
        train_config(
            _parser().parse_args(["--optimizer", "sgd", "--lr", "nan"]), TrainConfig(steps=1)
        )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "0"], "--lr must be > 0, got 0.0"),
        (["--time-budget", "nan"], "--time-budget must be > 0, got nan"),
        (["--early-stopping", "-1"], "--early-stopping must be >= 0, got -1"),
        (["--seed", "-1"], "--seed must be >= 0, got -1"),
        (["--warmup-steps", "-2"], "--warmup-steps must be >= 0, got -2"),
        (["--weight-decay", "inf"], "--weight-decay must be >= 0, got inf"),
    ],
)
def test_check_training_options_names_the_flag(argv, message):
    with pytest.raises(UsageError) as info:
        check_training_options(_parser().parse_args(argv))
    assert str(info.value) == message


def test_checks_of_ranges():
    args = argparse.Namespace(a=None, b=0.5, c=1.0, d=0, e=-0.5)
    check_positive(args, "--a", "--b")
    check_probability(args, "--a", "--b")
    check_non_negative(args, "--d")
    with pytest.raises(UsageError, match=r"^--c must be in \[0, 1\), got 1.0$"):
        check_probability(args, "--c")
    with pytest.raises(UsageError, match="^--d must be > 0, got 0$"):
        check_positive(args, "--d")
    with pytest.raises(UsageError, match="^--e must be >= 0, got -0.5$"):
        check_non_negative(args, "--e")


def test_cell_specific_flags():
    parser = _parser()
    check_cell_options(parser.parse_args(["--peephole"]), "lstm")
    check_cell_options(parser.parse_args(["--nonlinearity", "relu"]), "irnn")
    with pytest.raises(
        UsageError, match="^--peephole applies to --cell lstm only, got --cell gru$"
    ):
        check_cell_options(parser.parse_args(["--peephole"]), "gru")
    with pytest.raises(UsageError, match="^--reset-after applies to --cell gru only"):
        check_cell_options(parser.parse_args(["--no-reset-after"]), "lstm")
    # a command without the variant flags has nothing to check
    check_cell_options(argparse.Namespace(), "gru")


def test_resume_and_force_conflict():
    check_resume(_parser().parse_args(["--resume", "runs/x"]))
    with pytest.raises(UsageError, match="cannot be combined with --force"):
        check_resume(_parser().parse_args(["--resume", "runs/x", "--force"]))
