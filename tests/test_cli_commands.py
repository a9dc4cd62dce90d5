"""Every `rayalign` command, invoked the way a user does (issue 14 item 12).

`--help` for every command and sub-command found in the real parser (so a new command is
covered the day it is added), plus a real small invocation where one is cheap. `eval h2h`
crashed on every call for weeks because nothing ran it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rayalign.cli import build_parser, main

#: The canonical spellings that must exist (aliases may be dropped, these may not).
CANONICAL = {
    "data inspect", "rlthf run", "label", "generate", "llm serve", "rm train", "rm score", "sft",
    "dpo", "align", "eval rm", "eval h2h", "eval alpaca", "eval judge", "annotate serve",
    "annotate export", "annotate import", "annotate status", "rm serve", "report", "submit",
    "status", "logs",
}


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((*prefix, name))
                out += _commands(sub, (*prefix, name))
    return out


ALL_COMMANDS = _commands(build_parser())


def test_every_canonical_command_exists():
    names = {" ".join(c) for c in ALL_COMMANDS}
    assert CANONICAL <= names, sorted(CANONICAL - names)


@pytest.mark.parametrize("cmd", ALL_COMMANDS, ids=[" ".join(c) for c in ALL_COMMANDS])
def test_help_of_every_command(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main([*cmd, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rayalign " + " ".join(cmd))


def test_console_script_runs_as_a_user_would():
    """The installed entry point, in a fresh process: `python -m rayalign.cli --help`."""
    out = subprocess.run([sys.executable, "-m", "rayalign.cli", "eval", "h2h", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--datasets" in out.stdout and "--subset" in out.stdout


def test_eval_h2h_real_invocation(shared_data, tmp_path, capsys):
    """Two stored AlpacaEval output files, judged by a random-weight tiny local model."""
    d = shared_data / "alpaca_eval"
    rc = main(["eval", "h2h", "--outputs-a", str(d / "outputs_phi-2-dpo.jsonl"),
               "--outputs-b", str(d / "outputs_phi-2.jsonl"), "--data-dir", str(d),
               "--subset", "2", "--judge-model", "tiny", "--out", str(tmp_path), "--name", "h"])
    assert rc == 0
    table = json.loads((tmp_path / "h.json").read_text())
    assert table["rows"], table
    rows = (tmp_path / "h.rows.jsonl").read_text().splitlines()
    assert len(rows) == 2
    assert "outputs_phi-2-dpo" in capsys.readouterr().out


def test_eval_alpaca_with_datasets_filter(shared_data, tmp_path, capsys):
    d = shared_data / "alpaca_eval"
    rc = main(["eval", "alpaca", "--annotations",
               str(d / "annotations_gpt4_phi-2_vs_text_davinci_003.dev.jsonl"),
               "--out", str(tmp_path), "--name", "a"])
    assert rc == 0 and (tmp_path / "a.md").exists()


def test_data_inspect_real_invocation(capsys):
    bundled = Path(__file__).resolve().parents[1] / "jobs" / "data" / "toy_preferences.jsonl"
    assert main(["data", "inspect", str(bundled), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary


@pytest.mark.parametrize("cmd", [["report", "--run-dir", "does/not/exist"],
                                 ["annotate", "status", "--run-dir", "does/not/exist"]])
def test_commands_on_a_missing_run_say_so_in_one_line(cmd, capsys):
    rc = main(cmd)
    err = capsys.readouterr().err
    assert rc != 0
    assert err.startswith("error:") and "does/not/exist" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("label_name, kind", [("hh_rlhf", "hh"), ("pairwise_jsonl", "pairwise"),
                                              ("alpaca_annotations", "alpaca-annotations")])
def test_format_names_of_label_and_data_kinds_are_interchangeable(label_name, kind, capsys):
    """`rayalign label` said `hh_rlhf` where configs and `data inspect` said `hh`: both
    spellings now work in every place, and mean the same format."""
    from rayalign.config import ConfigError, validate_config
    from rayalign.feedback.config import LabelJobConfig
    from rayalign.rlthf.config import RLTHFConfig

    judge = {"kind": "openai", "model": "m", "base_urls": ["http://127.0.0.1:9/v1"]}
    for name in (label_name, kind):
        cfg = validate_config(LabelJobConfig, {"input": "x", "input_format": name, "judge": judge})
        assert cfg.input_format == label_name
    if kind == "hh":
        for name in ("hh", "hh_rlhf"):
            assert validate_config(RLTHFConfig, {"data": {"kind": name}}).data.kind == "hh"
    with pytest.raises(ConfigError, match="input_format"):
        validate_config(LabelJobConfig, {"input": "x", "input_format": "hh-rlhf", "judge": judge})
    bundled = "bundled:hh_rlhf_harmless" if kind == "hh" else None
    if bundled:
        for name in (label_name, kind):
            assert main(["data", "inspect", bundled, "--kind", name, "--json"]) == 0
            assert json.loads(capsys.readouterr().out)["kind"] == "hh"
