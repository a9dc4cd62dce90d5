"""Paths to the data slices shipped inside the package (see ``rayalign/bundled/README.md``).

WHY importlib.resources: the files must be found the same way from a source checkout, an
editable install, a wheel install and inside Ray workers, without guessing ``__file__``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

# name -> (file inside rayalign/bundled, loader kind for ``rayalign.data.loaders.load_any``)
BUNDLED: dict[str, tuple[str, str]] = {
    "hh_rlhf_harmless": ("hh_rlhf_harmless.jsonl.gz", "hh"),
    "oasst2_ranked": ("oasst2_ranked.jsonl.gz", "oasst"),
}


def bundled_names() -> list[str]:
    return sorted(BUNDLED)


def bundled_path(name: str) -> Path:
    """The local path of bundled data set ``name``; a ``ValueError`` lists the valid names."""
    if name not in BUNDLED:
        raise ValueError(f"unknown bundled data set {name!r}; valid names: {', '.join(bundled_names())}")
    res = resources.files("rayalign") / "bundled" / BUNDLED[name][0]
    path = Path(str(res))
    if not path.is_file():
        raise FileNotFoundError(f"bundled data file {path} is missing: the package was installed "
                                "without its package data (reinstall rayalign)")
    return path


def load_bundled(name: str, *, skip_bad_rows: bool = True):
    """Load a bundled data set with its loader.

    ``skip_bad_rows`` defaults to True here because the bundled files are fixed and their few
    degenerate rows are documented (they are still listed in ``.report``).
    """
    from rayalign.data.loaders import load_any

    return load_any(bundled_path(name), BUNDLED[name][1], skip_bad_rows=skip_bad_rows)
