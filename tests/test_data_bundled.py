"""Bundled data: present inside the package, loadable, documented."""

from __future__ import annotations

import pytest

from rayalign.data.bundled import bundled_names, bundled_path, load_bundled
from rayalign.data.loaders import oasst_preference_pairs


def test_bundled_files_exist_and_load():
    assert bundled_names() == ["hh_rlhf_harmless", "oasst2_ranked", "pandalm"]
    hh = load_bundled("hh_rlhf_harmless")
    assert bundled_path("hh_rlhf_harmless").is_file()
    assert hh.report.rows_read == 1800 and len(hh) == 1796 and hh.report.skipped == 4
    oa = load_bundled("oasst2_ranked")
    assert len(oa) == 3032
    assert len(oasst_preference_pairs(oa)) == 1088
    readme = (bundled_path("hh_rlhf_harmless").parent / "README.md").read_text()
    for fact in ("MIT", "Apache-2.0", "354e5c3cb8960630860dd5774a6ac2a58313bf4d",
                 "83c2726c6c636c82382fa6e180903f4a0c591135", "1,800", "3,032",
                 "3871806e72b4832f815ecafd24d3503c73403f48", "760 pairs"):
        assert fact in readme
    assert (bundled_path("pandalm").parent / "LICENSE").read_text().lstrip().startswith("Apache License")


def test_bundled_pandalm_equals_shared_copies(shared_data):
    import gzip

    from rayalign.data.bundled import bundled_verdicts

    files = [bundled_path("pandalm"), bundled_verdicts("pandalm_gpt35")[1], bundled_verdicts("pandalm_7b")[1]]
    for f in files:
        assert gzip.open(f).read() == (shared_data / "pandalm" / f.name.removesuffix(".gz")).read_bytes()


def test_bundled_hh_equals_shared_copy(shared_data):
    assert bundled_path("hh_rlhf_harmless").read_bytes() == (shared_data / "hh_rlhf_harmless_test.dev.jsonl.gz").read_bytes()


def test_unknown_bundled_name_lists_valid_names():
    with pytest.raises(ValueError, match="hh_rlhf_harmless, oasst2_ranked, pandalm"):
        bundled_path("alpaca_eval")


def test_package_data_glob_covers_bundled_files():
    """pyproject's package-data glob ships every bundled file (no wheel build needed)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["rayalign"]
    pkg = root / "rayalign"
    shipped = {p for g in globs for p in pkg.glob(g) if p.is_file()}
    for name in bundled_names():
        assert bundled_path(name) in shipped
