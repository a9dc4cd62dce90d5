"""rayalign/errors.py: errors raised inside Ray become one `error:` line (issue 14 item 8/9)."""

from __future__ import annotations

import pytest

from rayalign.errors import JudgeFailed, user_message


def test_plain_user_errors_and_bugs():
    assert user_message(ValueError("data.path: x does not exist")) == "data.path: x does not exist"
    assert user_message(JudgeFailed("the judge failed on all 3 pairs")) == "the judge failed on all 3 pairs"
    assert user_message(RuntimeError("a bug")) is None
    assert user_message(KeyError("k")) is None


def test_errors_from_ray_tasks_and_dead_actors(ray_local):
    ray = ray_local

    @ray.remote
    def task():
        raise FileNotFoundError("data.path: /nope.jsonl does not exist")

    @ray.remote
    class Actor:
        def __init__(self):
            raise ValueError("runs/x was started with seed=0, now seed=1; use a new --run-dir")

        def go(self):
            return 1

    @ray.remote
    def buggy():
        raise ZeroDivisionError("bug")

    with pytest.raises(Exception) as exc:
        ray.get(task.remote())
    assert user_message(exc.value) == "data.path: /nope.jsonl does not exist"
    with pytest.raises(Exception) as exc:
        ray.get(Actor.remote().go.remote())
    assert type(exc.value).__name__ == "ActorDiedError"
    assert user_message(exc.value) == "runs/x was started with seed=0, now seed=1; use a new --run-dir"
    with pytest.raises(Exception) as exc:
        ray.get(buggy.remote())
    assert user_message(exc.value) is None


def test_cli_prints_one_line_for_an_error_inside_ray(monkeypatch, capsys, tmp_path):
    """Through the real CLI: a judge config with no API key fails before any actor."""
    from rayalign.cli import main

    cfg = tmp_path / "label.yaml"
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"prompt": "p", "response_a": "a", "response_b": "b"}\n')
    cfg.write_text(f"input: {data}\nrun_dir: {tmp_path / 'run'}\njudge:\n  kind: openai\n"
                   "  model: gpt-x\n  base_urls: ['https://api.example.com/v1']\n"
                   "  api_key_env: RAYALIGN_TEST_NO_SUCH_KEY\n")
    monkeypatch.delenv("RAYALIGN_TEST_NO_SUCH_KEY", raising=False)
    assert main(["label", "--config", str(cfg)]) == 2
    err = _ours(capsys.readouterr().err)
    assert err.count("\n") == 1 and err.startswith("error: environment variable RAYALIGN_TEST_NO_SUCH_KEY")
    cfg.write_text(f"input: {data}\njudge:\n  kind: openai\n  base_urls: []\n")
    assert main(["label", "--config", str(cfg)]) == 2
    err = _ours(capsys.readouterr().err)
    assert "judge.base_urls" in err and "at least one base URL" in err and "Traceback" not in err
    cfg.write_text(f"input: {data}\njudge:\n  kind: openai\n")
    assert main(["label", "--config", str(cfg)]) == 2
    err = _ours(capsys.readouterr().err)
    assert "needs `model`" in err and "Traceback" not in err


def _ours(err: str) -> str:
    """stderr without lines Ray forwards from earlier tests' workers ("(Actor pid=...)")."""
    import re

    plain = re.sub(r"\x1b\[[0-9;]*m", "", err)
    return "".join(line for line in plain.splitlines(keepends=True)
                   if not re.match(r"\s*\(\w+ pid=\d+", line))
