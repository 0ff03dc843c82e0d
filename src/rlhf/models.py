"""Tokenizer and model construction, loading, saving, and batched generation.

Every checkpoint is in Hugging Face format, so `AutoTokenizer` / `AutoModelForCausalLM` load it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

EOS = "<|endoftext|>"
PAD = "<|pad|>"
# How an instruction is shown to a policy whose tokenizer has no chat template; the response
# follows after one space.
PROMPT_TEMPLATE = "Instruction: {prompt}\nResponse:"


def format_prompt(tokenizer, prompt: str, shots: Sequence[tuple[str, str]] = ()) -> str:
    """A prompt as every stage shows it to a policy, before tokenization. A tokenizer with a chat
    template (`tokenizer_config.json`'s `chat_template`, as instruct and many base checkpoints ship
    one) renders it: the prompt as the user's message, `shots` ((prompt, answer) pairs) as earlier
    turns, the assistant's turn opened. Without one, `PROMPT_TEMPLATE`, each shot as
    "{template} {answer}\n\n" before it. A template that writes the BOS token itself loses it here
    where the tokenizer adds one, so that tokenizing the text does not give two."""
    if not getattr(tokenizer, "chat_template", None):
        return "".join(f"{PROMPT_TEMPLATE.format(prompt=p)} {a}\n\n" for p, a in shots) + \
            PROMPT_TEMPLATE.format(prompt=prompt)
    turns = [m for p, a in shots for m in ({"role": "user", "content": p}, {"role": "assistant", "content": a})]
    text = tokenizer.apply_chat_template([*turns, {"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and text.startswith(bos) and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        text = text[len(bos):]
    return text


def response_separator(tokenizer) -> str:
    """What goes between a formatted prompt and its response: one space after `PROMPT_TEMPLATE`,
    nothing after a chat template's opened assistant turn."""
    return "" if getattr(tokenizer, "chat_template", None) else " "


def pick_device(name: str) -> torch.device:
    """`auto` -> CUDA when present, else CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("common.device is 'cuda' but torch sees no CUDA device")
    return torch.device(name)


def train_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE tokenizer trained on `texts`, wrapped as a fast HF tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   unk_token=EOS, pad_token=PAD)


def new_causal_lm(tokenizer, n_layer: int, n_head: int, n_embd: int, n_positions: int,
                  dropout: float = 0.0):
    """A small GPT-2-style causal LM, randomly initialised."""
    from transformers import GPT2Config, GPT2LMHeadModel

    # GPT-2's tanh GELU as one fused kernel (its default, gelu_new, is the same function in Python ops)
    cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd,
                     n_layer=n_layer, n_head=n_head, activation_function="gelu_pytorch_tanh",
                     resid_pdrop=dropout, embd_pdrop=dropout,
                     attn_pdrop=dropout, bos_token_id=tokenizer.eos_token_id,
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return GPT2LMHeadModel(cfg)


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    # never run code from a checkpoint folder (nor ask whether to: that waits on a terminal); the
    # likelihood reward model's folder has some, for its model class only. AutoTokenizer reads the
    # folder's config first, and without that code it would warn that the model type is unknown, so
    # a likelihood reward model's config is handed to it from this package's own class.
    cls = likelihood_reward_class(path)
    config = None if cls is None else cls.config_class.from_pretrained(str(path))
    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=False, config=config)
    if tok.pad_token is None:  # many hub checkpoints ship without one
        tok.pad_token = tok.eos_token
    return tok


def likelihood_reward_class(path: str | Path):
    """The class of a likelihood reward model saved in `path` (`rlhf.likelihood_reward`), by its
    config's model type; None for any other folder or a hub id."""
    import json

    try:
        model_type = str(json.loads((Path(path) / "config.json").read_text()).get("model_type"))
    except (OSError, ValueError):
        return None
    if not model_type.endswith("_likelihood_reward"):  # spares other folders the import (3-4 s)
        return None
    from rlhf.likelihood_reward import SAVED

    return SAVED.get(model_type)


# Where the model families that transformers knows keep their dropout probabilities: GPT-2 and
# GPT-J; GPT-NeoX, Llama, Qwen2, Mistral, Gemma; OPT; BERT-style encoders.
DROPOUT_FIELDS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "hidden_dropout", "attention_dropout",
                  "dropout", "activation_dropout", "hidden_dropout_prob", "attention_probs_dropout_prob")


def load_config(path: str | Path, dropout: float | None = None, **overrides):
    """A checkpoint's config with `overrides`; `dropout`, when given, goes to every dropout field the
    family has (GPT-2: residual, embedding and attention; Llama-style: attention only)."""
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(str(path), **overrides)
    if dropout is not None:
        fields = [f for f in DROPOUT_FIELDS
                  if isinstance(getattr(cfg, f, None), (int, float)) and not isinstance(getattr(cfg, f), bool)]
        if not fields and dropout > 0:
            raise ValueError(f"{path}: a {cfg.model_type} config has no dropout field to set to {dropout} "
                             f"(looked for {', '.join(DROPOUT_FIELDS)}); set the stage's dropout to 0")
        for f in fields:
            setattr(cfg, f, dropout)
    return cfg


def transformers_models(model: torch.nn.Module, what: str) -> list:
    """The outermost transformers models in `model` (PPO trains two, the policy and the value model;
    a CausalLM holds its trunk, a model too); a ValueError naming `what` when there is none."""
    from transformers import PreTrainedModel

    found, inside = [], set()
    for m in model.modules():
        if id(m) not in inside and isinstance(m, PreTrainedModel):
            found.append(m)
            inside.update(id(n) for n in m.modules())
    if not found:
        raise ValueError(f"{what}: {type(model).__name__} holds no transformers model")
    return found


def checkpoint_activations(model: torch.nn.Module) -> None:
    """Activation checkpointing (also called gradient checkpointing) on every transformers model in
    `model`: in training mode each layer keeps only its input for the backward pass and recomputes
    the rest there, so memory holds one layer's activations instead of all of them, for about one
    more forward pass of compute. Non-reentrant (transformers' default), so dropout draws the same
    masks again and the gradients are those without it up to float rounding. Evaluation and
    sampling, in eval mode, run as before."""
    for m in transformers_models(model, "activation checkpointing"):
        if not m.supports_gradient_checkpointing:
            raise ValueError(f"{type(m).__name__} cannot recompute its activations (transformers' activation "
                             "checkpointing); set the stage's activation_checkpointing to false")
        m.activation_checkpointing_enable()


# The scalar heads of reward and value models (transformers' *ForSequenceClassification): new or
# small, so under LoRA they train in full.
HEADS = ("score", "classifier")
ADAPTER = "default"  # peft's name of the one adapter


def add_lora(model: torch.nn.Module, lora) -> None:
    """LoRA (Hu et al. 2021, via peft) in every transformers model in `model`: each target layer
    (`lora.target_modules`) gets a trainable update B @ A of rank `lora.rank`, scaled by alpha / rank
    and zero at the start (B starts at 0), and every other weight of the model is frozen but a
    scalar head (`HEADS`). `merge_lora` folds the updates into the weights; `save` writes them
    folded in. `lora`: a `config.LoraConfig`."""
    import warnings

    from peft import LoraConfig, inject_adapter_in_model

    targets = lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    for m in transformers_models(model, "LoRA"):
        cfg = LoraConfig(r=lora.rank, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets)
        with warnings.catch_warnings():  # GPT-2's Conv1D layers: peft sets fan_in_fan_out itself, and says so
            warnings.filterwarnings("ignore", message="fan_in_fan_out is set")
            try:
                inject_adapter_in_model(cfg, m, adapter_name=ADAPTER)
            except ValueError as e:
                raise ValueError(f"LoRA in {type(m).__name__}: {e} (the stage's lora.target_modules is "
                                 f"{lora.target_modules!r})") from None
        for name, p in m.named_parameters():
            p.requires_grad_(".lora_" in name or name.split(".")[0] in HEADS)


def lora_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """(name, layer) of every layer in `model` that carries a LoRA update (none before peft is imported)."""
    import sys

    lora = sys.modules.get("peft.tuners.lora")
    return [] if lora is None else [(n, m) for n, m in model.named_modules() if isinstance(m, lora.LoraLayer)]


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s state dict as the plain model's (the keys it had before `add_lora`), each LoRA
    update added to its weight; `model` is left as it is (training goes on)."""
    state = model.state_dict()
    for name, layer in lora_layers(model):
        at, base = f"{name}.", f"{name}.base_layer."
        for key in [k for k in state if k.startswith(at)]:
            if key.startswith(base):
                state[at + key[len(base):]] = state.pop(key)
            else:  # the adapters' own weights
                del state[key]
        weight = state[at + "weight"]
        state[at + "weight"] = weight + layer.get_delta_weight(ADAPTER).detach().to(weight.dtype)
    return state


def merge_lora(model: torch.nn.Module) -> None:
    """Fold every LoRA update into its weight and put the plain layers back: `model` is again the
    architecture it was before `add_lora` (its `save_pretrained` writes a plain checkpoint)."""
    layers = lora_layers(model)
    if not layers:
        return
    state = merged_state_dict(model)
    for name, layer in layers:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.get_base_layer())
    for m in model.modules():
        m.__dict__.pop("peft_config", None)  # peft's note of the adapter on the model it went into
    model.load_state_dict(state)


def load_causal_lm(path: str | Path, dropout: float | None = None):
    """A causal LM from a checkpoint; `dropout` overrides its dropout probabilities when given."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path), config=load_config(path, dropout))


def save(model, tokenizer, path: str | Path) -> None:
    """A model and its tokenizer in Hugging Face format. The tokenizer is saved without the padding
    and truncation of its last call: a fast tokenizer keeps those in its Rust backend, which
    tokenizer.json stores and loading reads back as the tokenizer's defaults. After generation that
    was left padding, left truncation and a cut at the last prompt limit (104 tokens on the default
    run), which `tokenizers.Tokenizer.from_file` and servers that read tokenizer.json applied to every
    text. transformers sets both for each call anyway, so the tokenizer in memory loses nothing."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    # a model in LoRA training is saved as the plain model with its updates folded in
    model.save_pretrained(path, state_dict=merged_state_dict(model) if lora_layers(model) else None)
    backend = getattr(tokenizer, "backend_tokenizer", None)  # None for a slow (Python) tokenizer
    if backend is not None:
        backend.no_truncation()
        backend.no_padding()
    tokenizer.save_pretrained(path)


@contextmanager
def left_padded(tokenizer) -> Iterator:
    """The tokenizer padding and truncating on the left inside the block, as generation needs (every
    prompt ends where its response starts, and an over-long one loses its oldest text, never the
    question), and on the sides it had before after it."""
    sides = tokenizer.padding_side, tokenizer.truncation_side
    tokenizer.padding_side = tokenizer.truncation_side = "left"
    try:
        yield tokenizer
    finally:
        tokenizer.padding_side, tokenizer.truncation_side = sides


def max_positions(model) -> int:
    cfg = model.config
    return getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", 1024)


def text_block(model, n_positions: int) -> int:
    """Tokens per block of pretraining text (pretraining, the ptx term, the held-out LM loss):
    `pretrain.n_positions`, or the model's context where that is shorter. A hub model's context
    (131,072 for Llama 3) would make one block of more text than a corpus may hold."""
    return min(n_positions, max_positions(model))


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, temperature: float = 1.0,
             do_sample: bool = True, num_return_sequences: int = 1, batch_size: int = 64,
             shots: Sequence[tuple[str, str]] = (), template: bool = True) -> list[str]:
    """Responses to raw prompts (formatted here, `format_prompt`), left-padded batched generation
    with the KV cache; `num_return_sequences` responses per prompt, grouped by prompt. `shots`
    (few-shot examples) go before each prompt; the response then ends at its first line break,
    where a few-shot model would start the next example. `template=False` continues the texts as
    they are (a language model's view: capability probes)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    limit = max_positions(model) - max_new_tokens
    out: list[str] = []
    for i in range(0, len(prompts), batch_size):
        texts = [format_prompt(tokenizer, p, shots) if template else p for p in prompts[i:i + batch_size]]
        with left_padded(tokenizer):
            enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=limit)
        enc = {k: v.to(device) for k, v in enc.items()}
        kwargs = dict(do_sample=do_sample, max_new_tokens=max_new_tokens,
                      num_return_sequences=num_return_sequences,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
        if do_sample:
            kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
        seqs = model.generate(**enc, **kwargs)
        new = seqs[:, enc["input_ids"].shape[1]:]
        decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
        out.extend((t.strip().split("\n")[0].strip() if shots else t.strip()) for t in decoded)
    model.train(was_training)
    return out
