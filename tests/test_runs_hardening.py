"""Run directories (issue 14 items 5, 7, 9): lock, secret redaction, resume rules."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import yaml

from rayalign.config import StrictModel, operational, operational_fields
from rayalign.errors import UserError, user_message
from rayalign.feedback.config import JudgeConfig, LabelJobConfig
from rayalign.runs import RunDir, RunDirBusy


def _label_cfg(**judge) -> LabelJobConfig:
    j = dict(kind="openai", model="m", base_urls=["http://127.0.0.1:9/v1"])
    j.update(judge)
    return LabelJobConfig(input="x.jsonl", judge=JudgeConfig(**j))


def test_redaction_is_by_secret_field_name_not_substring(tmp_path):
    class C(StrictModel):
        max_tokens: int = 7
        api_key_env: str = "MY_KEY"
        api_key: str = "sk-secret"
        token: str = "annotate-secret"
        hf_token: str = "hf_secret"

    run = RunDir.create_or_open(tmp_path / "r", job="x", config=C())
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert cfg["max_tokens"] == 7 and cfg["api_key_env"] == "MY_KEY"
    assert cfg["api_key"] == cfg["token"] == cfg["hf_token"] == "***"
    assert "secret" not in (tmp_path / "r" / "config.yaml").read_text()
    assert run.path.exists()


def test_changed_max_tokens_is_refused_in_one_line_naming_both_values(tmp_path):
    run = RunDir.create_or_open(tmp_path / "r", job="label", config=_label_cfg())
    run.mark_done("label")
    with pytest.raises(ValueError) as exc:
        RunDir.create_or_open(tmp_path / "r", job="label",
                              config=_label_cfg(params={"max_tokens": 9, "temperature": 0.0}))
    msg = str(exc.value)
    assert "\n" not in msg
    assert "judge.params.max_tokens=256" in msg and "judge.params.max_tokens=9" in msg


def test_operational_changes_resume_and_are_recorded(tmp_path):
    run = RunDir.create_or_open(tmp_path / "r", job="label", config=_label_cfg())
    run.mark_done("label")
    RunDir.create_or_open(tmp_path / "r", job="label",
                          config=_label_cfg(concurrency=8, timeout_s=5.0,
                                            base_urls=["http://127.0.0.1:10/v1"]))
    changes = run.manifest()["config_changes"][-1]["changed"]
    assert set(changes) == {"judge.concurrency", "judge.timeout_s", "judge.base_urls"}
    assert changes["judge.timeout_s"] == [60.0, 5.0]
    assert yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())["judge"]["concurrency"] == 8


def test_a_run_that_finished_no_step_takes_the_fixed_config(tmp_path):
    RunDir.create_or_open(tmp_path / "r", job="label", config=_label_cfg())
    # nothing finished (e.g. it stopped on a wrong input path): a fixed input is accepted
    fixed = _label_cfg().model_copy(update={"input": "right.jsonl"})
    run = RunDir.create_or_open(tmp_path / "r", job="label", config=fixed)
    assert run.config()["input"] == "right.jsonl"


def test_operational_fields_are_declared_once():
    ops = operational_fields(JudgeConfig)
    assert {"concurrency", "timeout_s", "base_urls", "api_key_env", "max_retries"} <= ops
    assert not {"model", "params", "template", "both_orders", "max_input_tokens"} & ops

    class Job(StrictModel):
        a: int = operational(1)
        b: int = 2

    assert operational_fields(Job) == {"a"}


HOLDER = textwrap.dedent("""
    import sys, time
    from rayalign.runs import RunDir
    RunDir.create_or_open(sys.argv[1], job="x", config={"a": 1})
    print("locked", flush=True)
    time.sleep(60)
""")


def test_second_process_on_a_run_dir_is_told_who_holds_it(tmp_path):
    path = tmp_path / "r"
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdout=subprocess.PIPE,
                         text=True, env={**os.environ})
    try:
        assert p.stdout.readline().strip() == "locked"
        with pytest.raises(RunDirBusy) as exc:
            RunDir.create_or_open(path, job="x", config={"a": 1})
        msg = str(exc.value)
        assert f"pid {p.pid}" in msg and "-c" in msg
        assert user_message(exc.value) == msg  # the CLI prints it as one error line
    finally:
        p.kill()
        p.wait()
    # the OS dropped the lock with the process: the run dir is usable again
    RunDir.create_or_open(path, job="x", config={"a": 1})


def test_run_dir_files_are_owner_only(tmp_path):
    from rayalign.feedback.cache import JudgmentCache

    run = RunDir.create_or_open(tmp_path / "r", job="x", config={"a": 1})
    run.log_metrics(step="s")
    c = JudgmentCache(run.file("judgments.sqlite"))
    assert len(c) == 0
    for name in ("judgments.sqlite", "metrics.jsonl", "config.yaml", "manifest.json"):
        assert (run.path / name).stat().st_mode & 0o077 == 0, name


def test_a_torn_last_line_is_skipped_then_cut_and_a_bad_middle_line_is_named(tmp_path, caplog):
    from rayalign.runs import append_jsonl, read_jsonl

    path = tmp_path / "rows.jsonl"
    assert append_jsonl(path, [{"i": 0}, {"i": 1}]) == 2
    with open(path, "ab") as f:  # what a kill in the middle of an append leaves
        f.write(b'{"i": 2, "te')
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}]
    assert "torn last line" in caplog.text
    append_jsonl(path, [{"i": 3}])  # the torn tail is cut, not glued onto the new row
    assert read_jsonl(path) == [{"i": 0}, {"i": 1}, {"i": 3}]
    assert path.read_bytes().endswith(b'{"i": 3}\n') and oct(path.stat().st_mode & 0o777) == "0o600"
    path.write_text('{"i": 0}\n{"i": 1\n{"i": 3}\n')  # damage inside the file is not guessed at
    with pytest.raises(UserError, match=r"rows.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_human_answers_survive_a_process_killed_while_appending(tmp_path):
    """A real SIGKILL in a loop of appends: every answer read back is whole, and the next
    append after the kill lands intact."""
    import signal
    import subprocess
    import sys
    import time

    from rayalign.humans.ledger import HumanLabelRow, HumanLedger

    path = tmp_path / "human_labels.jsonl"
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from rayalign.humans.ledger import HumanLabelRow, HumanLedger\n"
        "ledger = HumanLedger(Path(sys.argv[1]))\n"
        "i = 0\n"
        "while True:\n"
        "    ledger.append([HumanLabelRow(id=f'p{i}-{j}', label='A', batch='b', annotator='x' * 4000)"
        " for j in range(50)])\n"
        "    i += 1\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
    deadline = time.time() + 60
    while (not path.exists() or path.stat().st_size < 2_000_000) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ledger = HumanLedger(path)
    before = ledger.load()
    assert len(before) >= 50 and all(r.label == "A" for r in before.values())
    ledger.append([HumanLabelRow(id="after-kill", label="B", batch="b2", annotator="me")])
    after = ledger.load()
    assert after["after-kill"].label == "B" and len(after) == len(before) + 1
