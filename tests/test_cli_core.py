"""The command-line skeleton: version, help, and `rnnkit bench speed`."""

from __future__ import annotations

import json

import pytest

from rnnkit import __version__
from rnnkit.cli.main import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"rnnkit {__version__}"


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


def test_bench_speed_json_has_ratios_to_torch_lstm(capsys):
    code = main(
        [
            "bench",
            "speed",
            "--size",
            "2,3,4,4",
            "--repeats",
            "1",
            "--only",
            "LSTM auto,peephole fused",
            "--json",
        ]
    )
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    names = [r["name"] for r in payload["results"]]
    assert names[:3] == ["torch.nn.LSTM", "torch.nn.GRU", "torch.nn.RNN"]
    assert "LSTM auto" in names and "peephole fused" in names
    baseline = payload["results"][0]
    assert baseline["train_ratio_to_torch_lstm"] == 1.0
    auto = next(r for r in payload["results"] if r["name"] == "LSTM auto")
    assert auto["train_ratio_to_namesake"] > 0
    assert auto["size"] == {"B": 2, "T": 3, "I": 4, "H": 4}


@pytest.mark.parametrize(
    "argv,message",
    [
        (["bench", "speed", "--only", "nope"], "error: unknown configuration(s) ['nope']"),
        (["bench", "speed", "--repeats", "0"], "error: --repeats must be >= 1, got 0"),
    ],
)
def test_bench_speed_bad_options(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_bench_speed_bad_size_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "speed", "--size", "1,2,3"])
    assert exit_info.value.code == 2
    assert "expected B,T,I,H as four positive integers" in capsys.readouterr().err
