"""The worker side of every Ray Train job: one loop for any TRL trainer.

RM, SFT and DPO training differ only in how the trainer is built (dataset, TRL config
class, model class, PEFT task type) and how the final model directory is made. That part is
a *trainer factory*; everything else — offline env, thread count, resuming from Ray Train's
latest checkpoint, fault injection for tests, reporting checkpoints, saving on every rank and
exporting on rank 0 — is :func:`trl_train_loop`, written once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Protocol

log = logging.getLogger(__name__)

FINAL_MARKER = "rayalign_final.json"
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}

#: ``make_final(saved_dir, final_dir)``: what ``trainer.save_model`` wrote -> a plain model dir.
FinalBuilder = Callable[[Path, Path], None]


class TrainerFactory(Protocol):
    """Builds one worker's TRL trainer; returns it with the final-model builder.

    ``cfg`` is the job's loop config (plain, picklable), ``tokenizer`` is loaded from
    ``cfg["model_path"]`` with a pad token, ``args`` are the TRL config kwargs every job
    shares (``output_dir`` included) and ``callbacks`` must be passed to the trainer.
    """

    def __call__(self, cfg: dict[str, Any], tokenizer, args: dict[str, Any],
                 callbacks: list) -> tuple[Any, FinalBuilder]: ...


def load_tokenizer(model_path: str):
    """The model's tokenizer with a pad token (causal LMs often have none: reuse EOS)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def peft_lora_config(lora: dict[str, Any] | None, task_type: str, **extra):
    """A PEFT ``LoraConfig`` from the plain settings dict, or None for full fine-tuning."""
    if not lora:
        return None
    from peft import LoraConfig, TaskType

    return LoraConfig(task_type=getattr(TaskType, task_type), r=lora["r"], lora_alpha=lora["alpha"],
                      lora_dropout=lora["dropout"], target_modules=lora["target_modules"], **extra)


def trl_train_loop(cfg: dict[str, Any]) -> None:
    """One Ray Train worker of any job: build the trainer with ``cfg["build_trainer"]``, train
    (resuming from Ray Train's latest checkpoint), save on every rank, report the final model."""
    rank, world = worker_setup(cfg)
    holder, resume_from, final_ckpt = resume_checkpoint_dir()
    if final_ckpt is not None:
        rereport_final(rank, final_ckpt)
        return
    _train_and_report(cfg, rank, world, resume_from, before=[],
                      after=[make_fault_callback(cfg.get("fail_at_step"), holder is None, rank)])
    if holder is not None:
        shutil.rmtree(holder, ignore_errors=True)


def trl_train_many(cfg: dict[str, Any]) -> None:
    """Several trainings (``cfg["subjobs"]``, e.g. cross-fitted folds) one after another in
    ONE Ray Train worker group: the group, its process group and the imports are paid once.

    WHY: a ``TorchTrainer`` start costs ~17 s on a laptop against ~1.4 s of training for a
    small RM (issue 16); an RLTHF iteration with k-fold cross-fitting used to pay it k+1 times.
    Each sub-job's final model is reported as its own checkpoint tagged ``rayalign_subjob``
    (the driver keeps them all and exports each); mid-training HF checkpoints carry the index
    in :data:`SUBJOB_FILE`, so a restarted group resumes inside the sub-job it was in and
    skips the finished ones.
    """
    rank, world = worker_setup(cfg)
    holder, resume_from, final_ckpt = resume_checkpoint_dir()
    start = 0
    if final_ckpt is not None:  # the latest checkpoint is a finished sub-job: go on after it
        start = int(json.loads((final_ckpt / "final" / FINAL_MARKER).read_text())["rayalign_subjob"]) + 1
    elif resume_from is not None:
        start = int(json.loads((Path(resume_from) / SUBJOB_FILE).read_text())["index"])
    fail = cfg.get("fail_at") or None  # (sub-job, step): chaos hook for tests
    for index in range(start, len(cfg["subjobs"])):
        sub = {**cfg, **cfg["subjobs"][index]}
        fault = make_fault_callback(fail[1] if fail and fail[0] == index else None,
                                    holder is None or index > start, rank)
        _train_and_report(sub, rank, world, resume_from if index == start else None,
                          before=[_subjob_tag_callback(index)], after=[fault],
                          extra_metrics={"rayalign_subjob": index})
    if holder is not None:
        shutil.rmtree(holder, ignore_errors=True)


#: Written into every HF checkpoint of :func:`trl_train_many`: which sub-job it belongs to.
SUBJOB_FILE = "rayalign_subjob.json"


def _subjob_tag_callback(index: int):
    from transformers import TrainerCallback

    class SubjobTag(TrainerCallback):
        """Marks each HF checkpoint with its sub-job before Ray Train copies it (runs first)."""

        def on_save(self, args, state, control, **kwargs):
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if ckpt.is_dir():
                (ckpt / SUBJOB_FILE).write_text(json.dumps({"index": index}))

    return SubjobTag()


def _train_and_report(cfg: dict[str, Any], rank: int, world: int, resume_from: str | None, *,
                      before: list, after: list, extra_metrics: dict[str, Any] | None = None) -> None:
    """Build the trainer, train (from ``resume_from`` if given), save, report the final model.

    ``before`` callbacks see (and may tag) each HF checkpoint before Ray Train's report
    callback copies it; ``after`` ones run once it is reported (the fault hook must).
    """
    from ray.train.huggingface.transformers import RayTrainReportCallback, prepare_trainer
    from transformers import set_seed

    # The factory initialises new weights (score head, LoRA) from the global RNG: seed it per
    # fit, so a fit is the same alone or as the n-th of a batch (and the config's seed counts).
    set_seed(int(cfg["training_args"].get("seed", 0)))
    tok = load_tokenizer(cfg["model_path"])
    workdir = tempfile.mkdtemp(prefix=f"rayalign-{cfg['kind']}-rank{rank}-")
    build: TrainerFactory = cfg["build_trainer"]
    trainer, make_final = build(cfg, tok, {"output_dir": workdir, **cfg["training_args"]},
                                [*before, RayTrainReportCallback(), *after])
    trainer = prepare_trainer(trainer)
    t0 = time.perf_counter()
    out = trainer.train(resume_from_checkpoint=resume_from)
    metrics = summarize_log_history(trainer.state.log_history)
    metrics.update({"train_seconds_this_attempt": time.perf_counter() - t0,
                    "global_step": trainer.state.global_step, "world_size": world,
                    "peak_mem_bytes": peak_memory_bytes(), "resumed_from_step": checkpoint_step(resume_from),
                    "train_loss": out.training_loss, **(extra_metrics or {})})
    save_and_report_final(trainer, rank, make_final, metrics)
    shutil.rmtree(workdir, ignore_errors=True)


def worker_setup(cfg: dict[str, Any]) -> tuple[int, int]:
    """Offline env + thread count for a training worker; returns (rank, world size)."""
    import ray
    import ray.train
    import torch

    for k, v in OFFLINE_ENV.items():
        os.environ.setdefault(k, v)
    cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 0))
    if cfg.get("torch_threads"):
        torch.set_num_threads(int(cfg["torch_threads"]))
    elif cpus > 1:  # torch threads = the worker's CPU reservation (see training/cpus.py)
        torch.set_num_threads(cpus)
    ctx = ray.train.get_context()
    return ctx.get_world_rank(), ctx.get_world_size()


def resume_checkpoint_dir() -> tuple[Path | None, str | None, Path | None]:
    """Latest Ray Train checkpoint: (local copy, HF checkpoint path, final-model dir).

    The checkpoint is copied to a local temp dir first: Ray Train prunes old checkpoints
    (``num_to_keep``) while training goes on, and on a cluster storage is remote anyway.
    A *final* checkpoint means an earlier attempt finished training and only the export was
    lost: the worker re-reports it instead of training again.
    """
    import ray.train
    from ray.train.huggingface.transformers import RayTrainReportCallback

    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return None, None, None
    d = Path(tempfile.mkdtemp(prefix="rayalign-resume-"))
    ckpt.to_directory(str(d))
    log.warning("resuming from Ray Train checkpoint %s", ckpt.path)
    if (d / "final" / FINAL_MARKER).is_file():
        return d, None, d
    hf = d / RayTrainReportCallback.CHECKPOINT_NAME
    return d, (str(hf) if hf.is_dir() else None), None


def checkpoint_step(hf_checkpoint: str | None) -> int:
    """The optimizer step an HF checkpoint was taken at (0 = fresh start)."""
    if not hf_checkpoint:
        return 0
    state = Path(hf_checkpoint) / "trainer_state.json"
    return int(json.loads(state.read_text()).get("global_step", 0)) if state.is_file() else 0


def rereport_final(rank: int, ckpt_dir: Path) -> None:
    """Report an already-finished final model again (see :func:`resume_checkpoint_dir`)."""
    import ray.train
    from ray.train import Checkpoint

    metrics = json.loads((ckpt_dir / "final" / FINAL_MARKER).read_text())
    ray.train.report(metrics=metrics,
                     checkpoint=Checkpoint.from_directory(str(ckpt_dir)) if rank == 0 else None)


def make_fault_callback(fail_at_step: int | None, first_attempt: bool, rank: int = 0):
    """Chaos hook for tests: on the first attempt, once the checkpoint at ``fail_at_step``
    is registered with Ray Train, rank 0's process dies as if its node were lost."""
    from transformers import TrainerCallback

    class _KillAfterCheckpoint(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if first_attempt and fail_at_step is not None and state.global_step >= fail_at_step:
                import ray.train

                # Wait until the controller has the checkpoint, or the restart finds none.
                ray.train.get_all_reported_checkpoints(timeout_s=120)
                if rank == 0:
                    log.warning("fault injection: killing rank 0 after step %d", state.global_step)
                    os._exit(1)

    return _KillAfterCheckpoint()


def save_and_report_final(trainer, rank: int, make_final: Callable[[Path, Path], None],
                          metrics: dict[str, Any]) -> None:
    """All ranks save (ZeRO-3 gathers), rank 0 builds the final dir and reports it.

    ``make_final(saved_dir, final_dir)`` turns what ``trainer.save_model`` wrote (an adapter
    or a full model) into a plain ``from_pretrained`` directory.
    """
    import ray.train
    from ray.train import Checkpoint

    saved = Path(trainer.args.output_dir) / "final_save"
    trainer.save_model(str(saved))
    if rank != 0:
        ray.train.report(metrics=metrics, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as tmp:
        final = Path(tmp) / "final"
        make_final(saved, final)
        (final / FINAL_MARKER).write_text(json.dumps(metrics, default=str, indent=2))
        ray.train.report(metrics=metrics, checkpoint=Checkpoint.from_directory(tmp))


def peak_memory_bytes() -> int:
    """Peak memory of this process: CUDA allocator peak on GPU, else peak RSS."""
    try:
        import torch

        if torch.cuda.is_available() and torch.cuda.is_initialized():
            return int(torch.cuda.max_memory_allocated())
    except Exception:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # KiB on Linux


def summarize_log_history(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The last value of each logged metric, plus the first training loss (for the record)."""
    out: dict[str, Any] = {}
    first_loss = None
    for row in history:
        if first_loss is None and "loss" in row:
            first_loss = row["loss"]
        for k, v in row.items():
            if isinstance(v, (int, float)):
                out[k] = v
    if first_loss is not None:
        out["first_loss"] = first_loss
    return out


def causal_lm_final_builder(base_path: str, tokenizer, lora: bool) -> Callable[[Path, Path], None]:
    """``make_final`` for causal LMs: merge a LoRA adapter into the base, or copy weights."""

    def make_final(saved: Path, final: Path) -> None:
        from transformers import AutoModelForCausalLM

        if lora:
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(base_path)
            model = PeftModel.from_pretrained(base, str(saved)).merge_and_unload()
        else:
            model = AutoModelForCausalLM.from_pretrained(str(saved))
        model.save_pretrained(final)
        tokenizer.save_pretrained(final)

    return make_final


