"""Training throughput: rayalign (TRL under Ray Train) vs plain single-process TRL.

Same model, same data, same TRL arguments, same run, one after the other:

* **LoRA RM** — TRL ``RewardTrainer`` + PEFT LoRA (r 32, alpha 64, ``modules_to_save=["score"]``)
* **DPO** — TRL ``DPOTrainer``, full fine-tuning, frozen reference copy (TRL default)

on a Qwen2-shaped model with random weights (throughput and MFU do not depend on the
weights' values, and nothing is downloaded). Reported per row: train tokens/s (tokens TRL
counted / TRL's train_runtime), end-to-end wall seconds (rayalign includes starting the Ray
Train worker group), peak memory (CUDA allocator peak on GPU, peak RSS on CPU) and MFU.

MFU = tokens/s x model FLOPs per token / peak FLOP/s, with model FLOPs per token

* LoRA RM: 4 N_rm (forward 2N + input-gradient backward 2N; frozen weights get no weight
  gradient; the LoRA adapters' own FLOPs, ~r/hidden of N, are left out),
* DPO: 8 N_lm (6N policy training + 2N reference forward),

where N is the *non-embedding* parameter count of the model that task actually trains
(the usual convention: no input embedding table, no output projection):

* N_rm = params(AutoModelForSequenceClassification, num_labels=1) - input embeddings
  - score head (hidden_size x 1, negligible); this model has no lm_head at all,
* N_lm = params(AutoModelForCausalLM) - input embeddings - lm_head (counted once if tied).

Leaving out the output projection understates the FLOPs of the DPO rows (the lm_head
matmul over the vocabulary is real work), so their MFU is a conservative figure; the
``params_non_emb_M`` column shows the N of each row. Peak FLOP/s: bf16 dense spec of the
GPU (H100 989 T, H200 989 T, A100 312 T), or on CPU the *measured* fp32 matmul peak of
this process (so CPU MFU reads "share of what this CPU achieves on a large GEMM", not a
vendor spec).

    # CPU (small Qwen2-shaped model, ~minutes on 2 cores)
    .venv/bin/python benchmarks/gpu_train.py --preset cpu-small
    # GPU machine: ~0.5B and ~1.5B Qwen2.5 shapes
    python benchmarks/gpu_train.py --preset qwen2.5-0.5b,qwen2.5-1.5b
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_TRAIN_ENABLE_PRINT_PATCH", "0")

# Qwen2 / Qwen2.5 shapes (config.json of the public checkpoints); cpu-small is ours.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu-small": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=None,
                      seq_len=128, pairs=64, batch=8),
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
                         seq_len=1024, pairs=512, batch=8),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                         seq_len=1024, pairs=512, batch=4),
}
GPU_PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}

_WORDS = ("the sun water bread oven dough friend letter city river music poem apple dog cat "
          "morning evening rain wind book table garden tree road house light wonderful").split()


# --- model and data ------------------------------------------------------------------------

def build_model(preset: str, root: Path) -> Path:
    """A Qwen2-shaped random-init causal LM + the tiny BPE tokenizer, cached under ``root``."""
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    from rayalign.models.tiny import build_tiny_causal_lm

    out = root / preset
    if (out / "config.json").is_file():
        return out
    tok_dir = build_tiny_causal_lm(root / "tiny-tokenizer")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    p = dict(PRESETS[preset])
    vocab = p.pop("vocab_size") or len(tok)
    for k in ("seq_len", "pairs", "batch"):
        p.pop(k)
    cfg = Qwen2Config(vocab_size=vocab, max_position_embeddings=4096, tie_word_embeddings=False,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=tok.bos_token_id, **p)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def make_pairs(n: int, seq_len: int, seed: int = 0):
    """Pairs whose prompt+response is about ``seq_len`` tokens (a word is ~1-2 tokens here)."""
    from rayalign.data.schema import PreferencePair

    rng = random.Random(seed)
    words = max(8, seq_len // 3)
    out = []
    for i in range(n):
        prompt = "Human: " + " ".join(rng.choice(_WORDS) for _ in range(words // 2)) + " Assistant:"
        chosen = " " + " ".join(rng.choice(_WORDS) for _ in range(words // 2))
        rejected = " " + " ".join(rng.choice(_WORDS) for _ in range(words // 2))
        out.append(PreferencePair(prompt=prompt, chosen=chosen, rejected=rejected, id=str(i)))
    return out


def non_embedding_params(model_dir: Path, task: str) -> int:
    """N for the MFU of ``task`` (see the module docstring): non-embedding parameters of the
    model that task trains — the sequence classifier for ``rm``, the causal LM for ``dpo`` —
    without input embeddings and without the output projection (lm_head / score head).
    Built on the meta device: nothing is allocated or read but config.json."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    if task == "rm":
        cfg = AutoConfig.from_pretrained(model_dir, num_labels=1)
        auto, head_name = AutoModelForSequenceClassification, "score"
    elif task == "dpo":
        cfg = AutoConfig.from_pretrained(model_dir)
        auto, head_name = AutoModelForCausalLM, "lm_head"
    else:
        raise ValueError(f"unknown task {task!r}")
    with torch.device("meta"):
        m = auto.from_config(cfg)
    params = dict(m.named_parameters())  # shared (tied) tensors appear once
    emb = m.get_input_embeddings().weight
    head = getattr(m, head_name).weight
    excluded = {id(emb): emb.numel(), id(head): head.numel()}  # a tied head counts once
    return sum(p.numel() for p in params.values()) - sum(excluded.values())


def cpu_matmul_peak(threads: int, n: int = 1024, reps: int = 8) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


# --- plain single-process TRL --------------------------------------------------------------

def plain_rm(model_dir: Path, pairs, cfg, threads: int) -> dict[str, Any]:
    import datasets
    import torch
    from peft import LoraConfig, TaskType
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from rayalign.training import ray_train as tu
    from rayalign.training import worker as tw
    from rayalign.rewards.rm_dir import encode

    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    tok = AutoTokenizer.from_pretrained(model_dir)
    ds = datasets.Dataset.from_list([
        {"chosen_ids": encode(tok, p.prompt, p.chosen, cfg.max_length),
         "rejected_ids": encode(tok, p.prompt, p.rejected, cfg.max_length)} for p in pairs])
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    lora = cfg.lora
    args = RewardConfig(output_dir=tempfile.mkdtemp(prefix="plain-rm-"), max_length=None,
                        **{**tu.base_training_args(cfg, cfg.scaling), "save_strategy": "no"})
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=ds, processing_class=tok,
        peft_config=LoraConfig(task_type=TaskType.SEQ_CLS, r=lora.r, lora_alpha=lora.alpha,
                               lora_dropout=lora.dropout, target_modules=lora.target_modules,
                               modules_to_save=["score"]))
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    m = tw.summarize_log_history(trainer.state.log_history)
    return {"num_tokens": m.get("num_tokens", 0.0), "train_runtime": m["train_runtime"],
            "wall_s": wall, "peak_mem_bytes": tw.peak_memory_bytes()}


def plain_dpo(model_dir: Path, pairs, cfg, threads: int) -> dict[str, Any]:
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    from rayalign.training import ray_train as tu
    from rayalign.training import worker as tw

    torch.set_num_threads(threads)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    tok = AutoTokenizer.from_pretrained(model_dir)
    ds = datasets.Dataset.from_list(
        [{"prompt": p.prompt, "chosen": p.chosen, "rejected": p.rejected} for p in pairs])
    args = DPOConfig(output_dir=tempfile.mkdtemp(prefix="plain-dpo-"), beta=cfg.beta,
                     max_length=cfg.max_length, truncation_mode=cfg.truncation_mode,
                     loss_type=[cfg.loss_type],
                     **{**tu.base_training_args(cfg, cfg.scaling), "save_strategy": "no"})
    trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), args=args,
                         train_dataset=ds, processing_class=tok)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    m = tw.summarize_log_history(trainer.state.log_history)
    return {"num_tokens": m.get("num_tokens", 0.0), "train_runtime": m["train_runtime"],
            "wall_s": wall, "peak_mem_bytes": tw.peak_memory_bytes()}


# --- rayalign under Ray Train ----------------------------------------------------------------

def rayalign_rm(model_dir: Path, pairs, cfg, out: Path) -> dict[str, Any]:
    from rayalign.rewards.lora import train_lora_rm
    from rayalign.rewards.rm_dir import rm_metadata

    t0 = time.perf_counter()
    rm = train_lora_rm(pairs, cfg, out)
    wall = time.perf_counter() - t0
    m = rm_metadata(rm)["metrics"]
    return {"num_tokens": m.get("num_tokens", 0.0), "train_runtime": m["train_runtime"],
            "wall_s": wall, "peak_mem_bytes": m.get("peak_mem_bytes", 0)}


def rayalign_dpo(model_dir: Path, pairs, cfg, out: Path) -> dict[str, Any]:
    from rayalign.policy.dpo import DPO_META, run_dpo

    t0 = time.perf_counter()
    d = run_dpo(pairs, model_dir, out, cfg)
    wall = time.perf_counter() - t0
    m = json.loads((d / DPO_META).read_text())["metrics"]
    return {"num_tokens": m.get("num_tokens", 0.0), "train_runtime": m["train_runtime"],
            "wall_s": wall, "peak_mem_bytes": m.get("peak_mem_bytes", 0)}


# --- main ------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="cpu-small",
                    help=f"comma-separated, from: {', '.join(PRESETS)}")
    ap.add_argument("--tasks", default="rm,dpo")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per trainer (CPU runs)")
    ap.add_argument("--pairs", type=int, default=None, help="override the preset's pair count")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "rayalign-bench-models"))
    ap.add_argument("--repeats", type=int, default=1,
                    help="run each runner N times (alternating), keep the best tokens/s: "
                         "a shared machine is noisy")
    ap.add_argument("--json-out", default=None, help="also write the rows as JSON here")
    args = ap.parse_args(argv)

    import torch

    from rayalign.config import RayConfig
    from rayalign.training.config import DPOTrainConfig, LoraSettings, TrainScaling
    from rayalign.ray_utils import init_ray
    from rayalign.rewards.lora import LoraRMConfig

    gpu = torch.cuda.is_available()
    if gpu:
        name = torch.cuda.get_device_name(0)
        peak = next((v for k, v in GPU_PEAK_BF16.items() if k in name), None)
        device = f"{name}, bf16"
        scaling = TrainScaling(num_workers=1, use_gpu=True)
    else:
        peak = cpu_matmul_peak(args.threads)
        device = f"CPU, {args.threads} threads, fp32 (measured matmul peak {peak / 1e9:.1f} GFLOP/s)"
        scaling = TrainScaling(num_workers=1, use_gpu=False,
                               resources_per_worker={"CPU": args.threads})
        os.environ["RAYALIGN_TRAIN_THREADS"] = str(args.threads)
    init_ray(RayConfig(num_cpus=max(args.threads, 2) if not gpu else None))

    rows = []
    work = Path(tempfile.mkdtemp(prefix="rayalign-bench-"))
    for preset in args.preset.split(","):
        p = PRESETS[preset]
        model_dir = build_model(preset, Path(args.cache))
        pairs = make_pairs(args.pairs or p["pairs"], p["seq_len"])
        common = dict(num_epochs=1, per_device_batch_size=p["batch"],
                      effective_batch_size=p["batch"], max_length=p["seq_len"], scaling=scaling)
        for task in args.tasks.split(","):
            if task == "rm":
                cfg = LoraRMConfig(base_model=str(model_dir), learning_rate=1e-4,
                                   lora=LoraSettings(r=32, alpha=64, dropout=0.0), **common)
                n_params = non_embedding_params(model_dir, "rm")
                flops_per_token = 4 * n_params
                runs = [("plain TRL (1 process)", lambda k: plain_rm(model_dir, pairs, cfg, args.threads)),
                        ("rayalign (Ray Train, 1 worker)",
                         lambda k: rayalign_rm(model_dir, pairs, cfg, work / f"{preset}-rm-{k}"))]
                label = "LoRA RM"
            elif task == "dpo":
                cfg = DPOTrainConfig(learning_rate=1e-6, beta=0.1, **common)
                n_params = non_embedding_params(model_dir, "dpo")
                flops_per_token = 8 * n_params
                runs = [("plain TRL (1 process)", lambda k: plain_dpo(model_dir, pairs, cfg, args.threads)),
                        ("rayalign (Ray Train, 1 worker)",
                         lambda k: rayalign_dpo(model_dir, pairs, cfg, work / f"{preset}-dpo-{k}"))]
                label = "DPO"
            else:
                raise SystemExit(f"unknown task {task!r}")
            best: dict[str, dict] = {}
            for k in range(args.repeats):
                for who, fn in runs:
                    r = fn(k)
                    r["tokens_s"] = r["num_tokens"] / r["train_runtime"] if r["train_runtime"] else 0.0
                    print(json.dumps({"preset": preset, "task": label, "runner": who, "repeat": k, **r}),
                          flush=True)
                    if who not in best or r["tokens_s"] > best[who]["tokens_s"]:
                        best[who] = r
            for who, _fn in runs:
                r = best[who]
                mfu = r["tokens_s"] * flops_per_token / peak if peak else float("nan")
                rows.append({"preset": preset, "params_non_emb_M": n_params / 1e6, "task": label,
                             "runner": who, "tokens": r["num_tokens"], "tokens_s": r["tokens_s"],
                             "train_s": r["train_runtime"], "wall_s": r["wall_s"],
                             "peak_mem_GiB": r["peak_mem_bytes"] / 2 ** 30, "mfu": mfu})

    print(f"\nTraining throughput, {device}; random-init Qwen2-shaped models; "
          f"same TRL arguments in both runners; best of {args.repeats} run(s) each")
    head = ("model", "task", "runner", "tokens", "tokens/s", "train s", "wall s",
            "peak mem GiB", "MFU", "rayalign / plain")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for i, r in enumerate(rows):
        ratio = ""
        if r["runner"].startswith("rayalign") and i and rows[i - 1]["tokens_s"]:
            ratio = f"{r['tokens_s'] / rows[i - 1]['tokens_s']:.2f}x"
        print(f"| {r['preset']} ({r['params_non_emb_M']:.1f}M) | {r['task']} | {r['runner']} | "
              f"{r['tokens']:.0f} | {r['tokens_s']:.0f} | {r['train_s']:.1f} | {r['wall_s']:.1f} | "
              f"{r['peak_mem_GiB']:.2f} | {100 * r['mfu']:.1f}% | {ratio} |")
    if not gpu:
        print("\nGPU rows (qwen2.5-0.5b, qwen2.5-1.5b on H100/A100) were NOT run: no GPU here.")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
