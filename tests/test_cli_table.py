"""The command table: one spelling per command, shared job flags, -v anywhere, --version."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rayalign.cli import COMMANDS, build_parser, main


def test_every_command_in_the_table_parses_and_has_a_handler():
    parser = build_parser()
    for cmd in COMMANDS:
        argv = cmd.words.split()
        if cmd.job_example:
            argv += ["--config", cmd.job_example]
        # Fill required options/positionals with placeholders, as a user would.
        sub = parser
        for w in cmd.words.split():
            sub = next(a for a in sub._actions if a.dest and a.__class__.__name__ == "_SubParsersAction").choices[w]
        for action in sub._actions:
            if action.required and action.option_strings and action.dest not in ("config",):
                argv += [action.option_strings[0], action.choices[0] if action.choices else "x"]
            elif not action.option_strings and action.dest not in ("help",) and action.nargs is None:
                argv += ["x"]
        args = parser.parse_args(argv)
        assert callable(args.func), cmd.words


def test_one_spelling_per_command():
    words = [c.words for c in COMMANDS]
    assert len(words) == len(set(words))
    parser = build_parser()
    with pytest.raises(SystemExit):  # the old alias `serve llm` is gone
        parser.parse_args(["serve", "llm"])


@pytest.mark.parametrize("words", [c.words for c in COMMANDS if c.job_example])
def test_job_commands_share_config_set_run_dir_and_run_mode(words):
    parser = build_parser()
    base = words.split() + ["--config", "c.yaml"]
    a = parser.parse_args(base + ["--set", "seed=1", "--run-dir", "r", "--new", "-v"])
    assert (a.config, a.overrides, a.run_dir, a.run_mode, a.verbose) == ("c.yaml", ["seed=1"], "r", "new", True)
    assert parser.parse_args(base).run_mode == "auto"
    assert parser.parse_args(base + ["--resume"]).run_mode == "resume"
    with pytest.raises(SystemExit):
        parser.parse_args(base + ["--resume", "--new"])


def test_run_mode_is_checked_before_any_work(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["rlthf", "run", "--config", "jobs/configs/quickstart.yaml", "--run-dir", str(run),
                 "--resume"]) == 2
    assert "holds no run to continue" in capsys.readouterr().err
    run.mkdir()
    (run / "manifest.json").write_text("{}")
    assert main(["dpo", "--config", "jobs/configs/dpo_tiny.yaml", "--run-dir", str(run), "--new"]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_version_and_verbose_after_the_command():
    out = subprocess.run([sys.executable, "-m", "rayalign.cli", "--version"], capture_output=True,
                         text=True, check=True).stdout
    assert out.startswith("rayalign ")
    assert build_parser().parse_args(["data", "inspect", "f.jsonl", "-v"]).verbose is True
    assert build_parser().parse_args(["-v", "data", "inspect", "f.jsonl"]).verbose is True
    assert build_parser().parse_args(["data", "inspect", "f.jsonl"]).verbose is False


def test_run_dir_everywhere_no_run_flag():
    parser = build_parser()
    for words in (["annotate", "status"], ["report"]):
        assert parser.parse_args(words + ["--run-dir", "r"]).run_dir == "r"
        with pytest.raises(SystemExit):
            parser.parse_args(words + ["--run", "r"])
