"""Paths to the data slices shipped inside the package (see ``rayalign/bundled/README.md``).

WHY importlib.resources: the files must be found the same way from a source checkout, an
editable install, a wheel install and inside Ray workers, without guessing ``__file__``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# name -> (file inside rayalign/bundled, loader kind)
BUNDLED: dict[str, tuple[str, str]] = {
    "hh_rlhf_harmless": ("hh_rlhf_harmless.jsonl.gz", "hh"),
    "oasst2_ranked": ("oasst2_ranked.jsonl.gz", "oasst"),
    "pandalm": ("pandalm/testset-v1.json.gz", "pandalm"),
}

#: Recorded judge verdicts on a bundled data set, usable as ``labeller.replay_path:
#: bundled:<name>`` (``rayalign.feedback.replay``): name -> (data set, verdicts file).
BUNDLED_VERDICTS: dict[str, tuple[str, str]] = {
    "pandalm_gpt35": ("pandalm", "pandalm/gpt-3.5-turbo-testset-v1.json.gz"),
    "pandalm_7b": ("pandalm", "pandalm/pandalm-7b-testset-v1.json.gz"),
}


def bundled_names() -> list[str]:
    return sorted(BUNDLED)


def _package_file(rel: str) -> Path:
    path = Path(str(resources.files("rayalign") / "bundled" / rel))
    if not path.is_file():
        raise FileNotFoundError(f"bundled data file {path} is missing: the package was installed "
                                "without its package data (reinstall rayalign)")
    return path


def bundled_path(name: str) -> Path:
    """The local path of bundled data set ``name``; a ``ValueError`` lists the valid names."""
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled data set {name!r}; valid names: {', '.join(bundled_names())}")
    return _package_file(BUNDLED[name][0])


def bundled_verdicts(name: str) -> tuple[Path, Path]:
    """(data set path, verdicts path) of bundled recorded verdicts ``name``."""
    if name not in BUNDLED_VERDICTS:
        raise ValueError(f"unknown bundled verdicts {name!r}; valid names: {', '.join(sorted(BUNDLED_VERDICTS))}")
    data, verdicts = BUNDLED_VERDICTS[name]
    return bundled_path(data), _package_file(verdicts)


def load_bundled(name: str, *, skip_bad_rows: bool = True):
    """Load a bundled data set with its loader.

    ``skip_bad_rows`` defaults to True here because the bundled files are fixed and their few
    degenerate rows are documented (they are still listed in ``.report``).
    """
    path, kind = bundled_path(name), BUNDLED[name][1]
    if kind == "pandalm":
        from rayalign.data.votes import load_pandalm

        return load_pandalm(path, skip_bad_rows=skip_bad_rows)
    from rayalign.data.loaders import load_any

    return load_any(path, kind, skip_bad_rows=skip_bad_rows)
