"""Run report: plots from the run directory, self-contained HTML, Markdown, Chromium check."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from rayalign.reports.plots import plot_accuracy_vs_human, plot_human_spend, plot_margin_curve
from rayalign.reports.rlthf_report import write_report
from rayalign.humans.ledger import HumanLabelRow
from rayalign.rlthf.records import (BaselineRow, CurveRecord, FinalRow, IterationRow, MarginRow, OriginStat,
                                    SelectionRecord, write_record)
from rayalign.runs import RunDir, write_jsonl

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_run(root: Path, n: int = 240, iterations: int = 3, ground_truth: bool = True,
             baselines: bool = True, simulated: bool = True) -> Path:
    """A run directory built from the records the RLTHF driver writes (rayalign/rlthf/records.py)."""
    rng = np.random.default_rng(0)
    run = RunDir.create_or_open(root / "demo", "rlthf", {"human": {"kind": "simulated" if simulated
                                                                   else "queue"},
                                                         "labeller": {"kind": "simulated"}})
    ids = [f"p{i:04d}" for i in range(n)]
    gt = "cleaned 25%" if ground_truth else None
    human_total = 0
    for k in range(iterations):
        last = k == iterations - 1
        d = run.sub("iterations", f"iter_{k:02d}")
        x = np.linspace(-1, 1, n)
        margins = np.sort(3 * np.tanh(-4 * x) + rng.normal(0, 0.3, n) - 0.3 * k)[::-1]
        order = list(rng.permutation(ids))
        p_correct = 1 / (1 + np.exp(-2.5 * margins))
        correct = rng.random(n) < p_correct
        refl, knee, elbow = int(0.85 * n), int(0.7 * n), int(0.15 * n)
        human = [] if last else order[refl - 10: refl]
        flips = 0 if last else n - 1 - refl
        write_jsonl(d / "margins.jsonl", [
            MarginRow(id=i, rank=r, label="A", margin=float(m), origin="ai",
                      correct=bool(c) if ground_truth else None)
            for r, (i, m, c) in enumerate(zip(order, margins, correct))])
        write_record(d / "curve.json", CurveRecord(
            n=n, elbow=elbow, knee=knee, reflection=refl, elbow_margin=float(margins[elbow]),
            threshold_slope=0.1, flip_count=flips, human_batch_count=len(human)))
        if not last:
            write_record(d / "selection.json", SelectionRecord(
                flips=order[refl + 1:], human_batch=human, trusted=order[:knee], amplification=4,
                backoff=0.6, budget=10))
            write_jsonl(d / "human_labels.jsonl", [
                HumanLabelRow(id=i, label="B", batch=f"iter{k:02d}",
                              annotator="simulated-human" if simulated else "alice", simulated=simulated)
                for i in human])
        row = IterationRow(
            iteration=k, human_count=human_total, human_pct=100 * human_total / (4 * n),
            curated_acc=(0.75 + 0.04 * k) if ground_truth else None, rm_test_acc=0.70 + 0.02 * k,
            gain_from_flips=0.03 * k if ground_truth else None,
            gain_from_humans=0.01 * k if ground_truth else None, train_size=n // 2,
            elbow=elbow, knee=knee, reflection=refl, labeller="simulated", ground_truth=gt,
            top_left_n=1, top_left_wrong=0 if ground_truth else None, trusted_head=knee // 2,
            trusted_wrong=3 if ground_truth else None)
        if not last:
            row = row.model_copy(update=dict(
                human_batch=len(human), human_batch_no_label=0, flips=flips,
                flips_correct=int(0.7 * flips) if ground_truth else None))
        run.log_metrics(**row.to_json())
        human_total += len(human)
    if baselines:
        rows = [BaselineRow(method="ai_only", human_count=0, human_pct=0.0, curated_acc=0.75,
                            rm_test_acc=0.70, gain_from_flips=0.0, gain_from_humans=0.0, ground_truth=gt)]
        for h, acc in ((10, 0.752), (20, 0.755)):
            rows.append(BaselineRow(method="random", human_count=h, human_pct=100 * h / (4 * n),
                                    curated_acc=acc, rm_test_acc=0.701, rm_test_acc_sd=0.01,
                                    gain_from_flips=0.0, gain_from_humans=acc - 0.75, ground_truth=gt))
            rows.append(BaselineRow(method="random_flips", human_count=h, human_pct=100 * h / (4 * n),
                                    curated_acc=acc + 0.02, rm_test_acc=0.72, flips=35,
                                    gain_from_flips=0.02, gain_from_humans=acc - 0.75, ground_truth=gt))
        rows.append(BaselineRow(method="full_human", human_count=n, human_pct=25.0, curated_acc=1.0,
                                rm_test_acc=0.8, gain_from_humans=0.25, ground_truth=gt))
        for r in rows:
            run.log_metrics(**r.to_json())
    final = run.sub("final")
    write_jsonl(final / "relabelled_trl.jsonl", [{"prompt": "p", "chosen": "c", "rejected": "r"}])
    run.log_metrics(**FinalRow(
        pairs=4 * n, from_iteration=iterations - 1, labels="curated_then_rm", written_acc=0.83,
        written_acc_shard=0.87, curated_acc=0.87, written_acc_outside_shard=0.81, rm_only_acc=0.8,
        by_origin={"human": OriginStat(pairs=20, acc=1.0), "curated_ai": OriginStat(pairs=n - 20, acc=0.86),
                   "final_rm": OriginStat(pairs=3 * n, acc=0.81)}).to_json())
    return run.path


def test_plots_write_pngs(tmp_path):
    m = np.sort(np.random.default_rng(1).normal(size=300))[::-1]
    correct = m > -0.5
    for corr, pts in ((correct, {"elbow": 40, "knee": 220, "reflection": 260}),
                      (None, {"elbow": None, "knee": None, "reflection": None})):
        out = plot_margin_curve(m, corr, pts, tmp_path / f"c{corr is None}.png", "curve",
                                human_idx=[250, 251, 259])
        assert out.read_bytes()[:8] == PNG_MAGIC and out.stat().st_size > 10_000
    assert plot_margin_curve(np.array([]), None, {}, tmp_path / "e.png", "empty").is_file()
    rows = [{"method": "rlthf", "human_pct": x, "curated_acc": a, "rm_test_acc": a - 0.05,
             "curated_acc_sd": 0.01} for x, a in ((0, 0.75), (2, 0.8), (4, 0.85))]
    rows += [{"method": "random", "human_pct": 2, "curated_acc": a, "rm_test_acc": 0.7}
             for a in (0.75, 0.77)]  # two seeds at one budget: mean and sd
    rows += [{"method": "ai_only", "human_pct": 0, "curated_acc": 0.75, "rm_test_acc": 0.7},
             {"method": "full_human", "human_pct": 25, "curated_acc": 1.0, "rm_test_acc": 0.8}]
    assert plot_accuracy_vs_human(rows, tmp_path / "acc.png").read_bytes()[:8] == PNG_MAGIC
    spend = plot_human_spend([{"iteration": k, "human_count": 10 * k, "human_pct": 1.0 * k,
                               "flips": 5, "flips_correct": 4} for k in range(3)],
                             tmp_path / "spend.png")
    assert spend.read_bytes()[:8] == PNG_MAGIC


def test_report_is_self_contained_and_names_simulation(tmp_path):
    run = make_run(tmp_path)
    out = write_report(run)
    page = out.read_text()
    assert out == run / "report.html"
    for k in range(3):
        assert (run / "plots" / f"margins_iter_{k:02d}.png").is_file()
    assert (run / "plots" / "accuracy_vs_human.png").is_file()
    assert (run / "plots" / "human_spend.png").is_file()
    imgs = re.findall(r'<img src="([^"]+)"', page)
    assert len(imgs) == 5 and all(s.startswith("data:image/png;base64,") for s in imgs)
    # nothing external: no remote src/href, no script, no stylesheet link
    assert not re.search(r'(src|href)="(https?:)?//', page)
    assert "<script" not in page and "<link" not in page
    assert "simulated" in page and "cleaned 25%" in page
    assert "Random annotation" in page and "Full human" in page and "AI labels only" in page
    assert "relabelled_trl.jsonl" in page and "83.0 %" in page
    assert "gain per 1 % human" in page  # ROI table
    # honest accounting and readable keys (issues 13, 14.20)
    assert "Random + the same flips" in page and "gain: humans (paid)" in page and "judge errors / 100" in page
    assert page.index("RM test acc") < page.index("curated-label acc")     # the paper's metric first
    assert "from_iteration" not in page and "relabel_acc" not in page and "written_acc" not in page
    assert "accuracy of the DPO corpus (what was written)" in page and "curated: AI label" in page
    assert "Eyes-off check" in page and "Reading this report" in page
    assert "used from iteration k+1 on" in page   # one numbering of human batches, explained
    md = (run / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == 5 and all((run / p).is_file() for p in links)
    assert "simulated" in md


def test_collect_then_render(tmp_path):
    """collect() reads the run into plain data; rendering is formatting only (same data, two formats)."""
    from rayalign.reports.rlthf_report import collect, render_html, render_markdown

    data = collect(make_run(tmp_path))
    titles = [s.title for s in data.sections]
    assert titles[:2] == ["Results at equal human budget", "Return on human effort"]
    res = data.sections[0].table
    assert res.headers[3:5] == ["judge errors / 100 human labels", "RM test acc"]
    assert len(res.rows) == 3 + 4 + 1 + 1   # iterations, random x4, ai, full
    html, md = render_html(data), render_markdown(data)
    for row in res.rows:
        assert " | ".join(row) in md and all(c in html for c in row)


def test_report_without_ground_truth_or_baselines_and_people(tmp_path):
    run = make_run(tmp_path, iterations=2, ground_truth=False, baselines=False, simulated=False)
    page = write_report(run).read_text()
    assert "No baselines in this run." in page
    assert "people" in page and "alice" in page
    assert "unknown here" in page  # margin points not coloured by correctness


def test_report_escapes_text(tmp_path):
    run = make_run(tmp_path, iterations=2)
    rows = (run / "iterations" / "iter_00" / "human_labels.jsonl").read_text().splitlines()
    row = json.loads(rows[0])
    row["annotator"] = "<script>alert(1)</script>"
    (run / "iterations" / "iter_00" / "human_labels.jsonl").write_text(
        "\n".join([json.dumps(row)] + rows[1:]) + "\n")
    page = write_report(run).read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)" in page


def test_report_cli(tmp_path, capsys):
    from rayalign.cli import main

    run = make_run(tmp_path, iterations=1, baselines=False)
    assert main(["report", "--run-dir", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out
    assert main(["report", "--run-dir", str(tmp_path / "nope")]) == 2


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="Chromium is not installed: apt-get install -y chromium chromium-driver")
def test_report_renders_in_chromium(tmp_path):
    os.environ.setdefault("SE_OFFLINE", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    run = make_run(tmp_path)
    out = write_report(run)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for f in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
              "--no-first-run", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--disable-dev-shm-usage", "--window-size=1200,900",
              f"--user-data-dir={tmp_path / 'profile'}"]:
        opts.add_argument(f)
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        drv.get(out.resolve().as_uri())
        drv.execute_script("return document.readyState")
        sizes = drv.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
        assert len(sizes) == 5
        assert all(c and w > 0 and h > 0 for c, w, h in sizes), sizes
        assert "RLTHF report" in drv.title
        shot_dir = Path(os.environ.get("RAYALIGN_SCREENSHOT_DIR", tmp_path))
        shot_dir.mkdir(parents=True, exist_ok=True)
        drv.set_window_size(1200, int(drv.execute_script("return document.body.scrollHeight")))
        drv.save_screenshot(str(shot_dir / "report.png"))
    finally:
        drv.quit()
