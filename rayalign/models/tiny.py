"""Tiny, offline causal LM and reward model for tests, demos and CPU benchmarks.

Nothing may come from a model hub at run time, yet the real TRL / PEFT / Ray Train paths
must run in seconds. So we *build* a model here: a byte-level BPE tokenizer trained with
``tokenizers`` on a small built-in English corpus, and a ``LlamaConfig`` model with seeded
random weights. Both are saved with ``save_pretrained`` so every consumer loads them exactly
like a real checkpoint (``AutoModelForCausalLM.from_pretrained(dir)``).

Building is cached and idempotent: a finished build leaves a ``.rayalign-tiny.json`` marker
with its parameters; a second call with the same parameters returns at once. The build goes
to a temporary sibling directory and is renamed into place, so concurrent builders (pytest
workers, Ray workers) never see a half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

MARKER = ".rayalign-tiny.json"

PAD, EOS, BOS, UNK = "<pad>", "<|endoftext|>", "<s>", "<unk>"

# A plain chat template: role headers and the EOS token after each turn. TRL's SFT/DPO
# trainers apply it to conversational data; our own code uses prompt/completion text.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|endoftext|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

# A small English corpus: enough words that the BPE merges give sensible sub-words for the
# toy preference sets the tests use (helpful / harmful answers, greetings, numbers).
_CORPUS = """
The quick brown fox jumps over the lazy dog. A helpful assistant answers the question
clearly, politely and honestly. It explains the steps, gives an example and says when it
does not know. A harmful answer insults the user, refuses without reason or gives
dangerous advice. Human: How do I bake bread? Assistant: Mix flour, water, salt and yeast,
knead the dough, let it rise for an hour, shape it and bake it in a hot oven.
Human: What is the capital of France? Assistant: The capital of France is Paris.
Human: Can you help me write a letter to my friend? Assistant: Of course. Start with a warm
greeting, tell your friend the news, ask about their life and end with your best wishes.
Thank you very much for your help. You are welcome, I am happy to help. Please and thanks.
Good morning, good evening, good night. Yes, no, maybe, sure, sorry, great, good, bad.
One two three four five six seven eight nine ten hundred thousand million.
Monday Tuesday Wednesday Thursday Friday Saturday Sunday. January February March April.
The weather today is sunny with a light wind; tomorrow it will rain in the morning.
Reward models score responses; a preference pair has a prompt, a chosen and a rejected
response. Direct preference optimisation raises the likelihood of the chosen response
relative to the rejected one. Supervised fine tuning teaches the model to imitate
demonstrations. Reinforcement learning from human feedback and AI feedback.
Water boils at one hundred degrees. The earth goes around the sun once a year. Cats and
dogs are animals; apples and oranges are fruit; red, green and blue are colours.
I think that is a wonderful idea. That is a terrible idea and you should not do it.
Write a short poem about the sea. The sea is wide and deep and blue, it sings to me and
sings to you. Tell me a joke. Why did the chicken cross the road? To get to the other side.
Summarise the text in one sentence. Translate the sentence into French. Explain why.
"""


def _train_tokenizer(vocab_size: int):
    """Byte-level BPE: any input string tokenizes (no unknown characters), like real LMs."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=[PAD, EOS, BOS, UNK, "<|user|>", "<|assistant|>", "<|system|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    lines = [ln for ln in _CORPUS.strip().splitlines() if ln.strip()]
    tok.train_from_iterator(lines * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token=PAD, eos_token=EOS, bos_token=BOS, unk_token=UNK,
        model_max_length=2048,
    )
    fast.padding_side = "right"
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_llama_config(vocab_size: int, hidden_size: int = 64, layers: int = 2,
                      pad_token_id: int = 0, eos_token_id: int = 1, bos_token_id: int = 2):
    """The LlamaConfig of the tiny model (also used for the reward-model variant)."""
    from transformers import LlamaConfig

    heads = max(1, hidden_size // 16)
    return LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=hidden_size * 2,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=512, pad_token_id=pad_token_id, eos_token_id=eos_token_id,
        bos_token_id=bos_token_id, tie_word_embeddings=False,
    )


def _is_built(out: Path, params: dict) -> bool:
    m = out / MARKER
    if not m.is_file():
        return False
    try:
        return json.loads(m.read_text()) == params
    except (OSError, ValueError):
        return False


def _build(out_dir: str | os.PathLike, params: dict, kind: str) -> Path:
    out = Path(out_dir)
    if _is_built(out, params):
        return out
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    tok = _train_tokenizer(params["vocab_size"])
    cfg = tiny_llama_config(
        vocab_size=len(tok), hidden_size=params["hidden_size"], layers=params["layers"],
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    torch.manual_seed(params["seed"])
    if kind == "reward":
        cfg.num_labels = 1
        model = AutoModelForSequenceClassification.from_config(cfg)
    else:
        model = AutoModelForCausalLM.from_config(cfg)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tok.pad_token_id
        model.generation_config.eos_token_id = tok.eos_token_id

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.building."))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / MARKER).write_text(json.dumps(params))
        if out.exists():
            if _is_built(out, params):  # another process finished first
                shutil.rmtree(tmp, ignore_errors=True)
                return out
            shutil.rmtree(out)
        try:
            os.replace(tmp, out)
        except OSError:
            if not _is_built(out, params):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def build_tiny_causal_lm(out_dir: str | os.PathLike, vocab_size: int = 512,
                         hidden_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Build (or reuse) a tiny random-weight Llama causal LM + tokenizer at ``out_dir``."""
    params = {"kind": "causal_lm", "vocab_size": vocab_size, "hidden_size": hidden_size,
              "layers": layers, "seed": seed}
    return _build(out_dir, params, "causal_lm")


def build_tiny_reward_model(out_dir: str | os.PathLike, vocab_size: int = 512,
                            hidden_size: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Same tiny model as a sequence classifier with one output (a Bradley-Terry RM)."""
    params = {"kind": "reward", "vocab_size": vocab_size, "hidden_size": hidden_size,
              "layers": layers, "seed": seed}
    return _build(out_dir, params, "reward")
