"""The reward model: the SFT trunk with a scalar head, trained on K-way rankings; with a likelihood
coefficient, the head plus that many times the trunk's log-likelihood of the response
(`rlhf.likelihood_reward`). Every function here takes either.

A batch element is one prompt with all its K ranked responses; K may differ between the prompts of
one batch. All responses of a batch go through the model in one forward pass, as one [N, T] batch
(N = the sum of the Ks, no padded sequences), or with `reward_model.length_groups` G > 1 in G
passes by length, and their rewards are laid out as [B, K_max] with a mask that is False on the
slots of prompts with fewer responses.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from pathlib import Path
from types import SimpleNamespace

import torch

from rlhf import data, evaluation, lm, models
from rlhf.comparisons import (competition_ranks, expected_agreement, expected_ranker_agreement, gold_agreement,
                              ranker_pairs)
from rlhf.losses import kway_ranking_loss, pairwise_accuracy, pairwise_counts
from rlhf.train import fingerprint, fit, set_seed

SHIFT_KEY = "rlhf_reward_shift"  # in the model config: the shift already subtracted from every reward
# In the config too: the part of that shift no weight could carry (Llama-style models, below), which
# every reward computed here subtracts from the model's output.
OFFSET_KEY = "rlhf_reward_offset"


def from_sft(path: str | Path, likelihood_coef: float = 0.0):
    """The SFT model with its LM head replaced by a fresh scalar head (no dropout). With
    `likelihood_coef` c > 0, a likelihood reward model instead (`rlhf.likelihood_reward`; GPT-2,
    Llama or Qwen2 with tied embeddings): the head (with a bias) plus c times the trunk's
    log-likelihood of the response through the LM head; saving it writes its class's code beside
    the weights, so that transformers loads it with `trust_remote_code=True`."""
    from transformers import AutoModelForSequenceClassification

    cfg = models.load_config(path, dropout=0.0, num_labels=1)
    if not likelihood_coef:
        return _with_new_head(AutoModelForSequenceClassification, path, cfg)
    from rlhf.likelihood_reward import COEF_KEY, MARKER_KEY

    config_cls, model_cls = likelihood_family(cfg.model_type, getattr(cfg, "tie_word_embeddings", True),
                                              f"{path}: reward_model.likelihood_coef {likelihood_coef}")
    cfg = config_cls(**{**cfg.to_dict(), COEF_KEY: float(likelihood_coef),
                        MARKER_KEY: response_marker(models.load_tokenizer(path))})
    config_cls.register_for_auto_class()
    model_cls.register_for_auto_class("AutoModelForSequenceClassification")
    return _with_new_head(model_cls, path, cfg)


class _NoLoadReport(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "LOAD REPORT" not in record.getMessage()


def _with_new_head(model_cls, path: str | Path, cfg):
    """`model_cls.from_pretrained(path)` where the scalar head (`score`) is the only part the
    checkpoint may lack: transformers' report of that expected gap is muted (the stage trains one
    model per `average_seeds`, and the report came once each), and any other missing weight is a
    ValueError that names it."""
    log = logging.getLogger("transformers.modeling_utils")
    quiet = _NoLoadReport()
    log.addFilter(quiet)
    try:
        model, info = model_cls.from_pretrained(str(path), config=cfg, output_loading_info=True)
    finally:
        log.removeFilter(quiet)
    missing = sorted(k for k in info["missing_keys"] if not k.startswith("score."))
    if missing:
        raise ValueError(f"{path}: the checkpoint lacks {', '.join(missing)}; a reward model starts from a "
                         "complete SFT model and adds only its scalar head")
    return model


def likelihood_family(model_type: str, tied: bool, what: str):
    """The likelihood reward model's (config class, model class) for a base model's family, or a
    ValueError that starts with `what`."""
    from rlhf.likelihood_reward import FAMILIES

    if model_type not in FAMILIES or not tied:
        raise ValueError(f"{what} needs a base model of the {', '.join(FAMILIES)} families with tied input and "
                         f"output embeddings, and this one is a {model_type} (tie_word_embeddings={tied}); "
                         f"set reward_model.likelihood_coef to 0 (the paper's head)")
    return FAMILIES[model_type]


def response_marker(tokenizer) -> list[int]:
    """The token ids that end every formatted prompt ("\nResponse:", or a chat template's opening
    of the assistant's turn), as they come out of tokenizing a whole prompt (`data.encode_pairs`
    tokenizes prompt and response apart, so the response starts right after them)."""
    question = "Name a colour."
    text = models.format_prompt(tokenizer, question)
    suffix = text[text.rindex(question) + len(question):]
    marker = tokenizer(suffix, add_special_tokens=False)["input_ids"]
    whole = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not marker or whole[-len(marker):] != marker:
        raise ValueError(f"the tokenizer does not give the template's end {suffix!r} the same ids inside a "
                         f"prompt ({whole[-len(marker):]}) as alone ({marker})")
    return marker


def save(model, tokenizer, path: str | Path) -> None:
    """A reward model and its tokenizer in Hugging Face format. The tokenizer is saved to pad on the
    right, the layout the model was trained on: transformers' own `*ForSequenceClassification`
    classes (the paper's head) count positions from column 0, so a batch padded on the left (as
    generation pads, and as some hub tokenizers do by default) would score its shorter rows at
    shifted positions. The likelihood model counts from each row's first real token and scores
    either way."""
    tokenizer.padding_side = "right"
    # tokenizer_config.json is written from the init kwargs, not the attribute: a tokenizer whose
    # own config says left (some hub models') would load left again
    tokenizer.init_kwargs["padding_side"] = "right"
    models.save(model, tokenizer, path)


def load(path: str | Path):
    """A reward model saved by the reward_model stage (either head)."""
    from transformers import AutoModelForSequenceClassification

    likelihood_cls = models.likelihood_reward_class(path)
    if likelihood_cls is not None:
        return likelihood_cls.from_pretrained(str(path), num_labels=1)
    return AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)


def group_mask(sizes: list[int]) -> torch.Tensor:
    """[B, K_max] bool: True on the first sizes[b] slots of row b."""
    return torch.arange(max(sizes)).unsqueeze(0) < torch.tensor(sizes).unsqueeze(1)


def pad_groups(groups: list[list], fill=0) -> tuple[torch.Tensor, torch.Tensor]:
    """Number lists of different lengths as a [B, K_max] tensor and its [B, K_max] bool mask."""
    k = max(len(g) for g in groups)
    return torch.tensor([list(g) + [fill] * (k - len(g)) for g in groups]), group_mask([len(g) for g in groups])


def group_batch(tokenizer, prompts: list[str], responses: list[list[str]], ranks: list[list[int]] | None,
                max_len: int) -> dict:
    """B prompts with K_b responses each as one [sum K_b, T] batch (one forward pass); `mask`
    [B, K_max] places them; `ranks` [B, K_max] when given."""
    flat_p = [p for p, rs in zip(prompts, responses) for _ in rs]
    flat_r = [r for rs in responses for r in rs]
    batch = data.collate(data.encode_pairs(tokenizer, flat_p, flat_r, max_len), tokenizer.pad_token_id)
    batch["mask"] = group_mask([len(rs) for rs in responses])
    if ranks is not None:
        batch["ranks"], _ = pad_groups(ranks)
    return batch


ROW_OUTPUTS = ("logits", "response_log_likelihood", "response_tokens")  # the per-row outputs read here


def _row_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, groups: int = 1):
    """(the model's output on N right-padded rows, their [N] rewards). With `groups` > 1 the rows
    are sorted by length and run as that many forward passes, each cut to its own rows' width
    (`data.length_groups`), and the per-row outputs (`ROW_OUTPUTS`) put back in the rows' order:
    the same rewards and gradients as one pass, up to float rounding, with less padding read."""
    device = next(model.parameters()).device
    ids, mask = input_ids.to(device), attention_mask.to(device)
    if groups <= 1:
        out = model(input_ids=ids, attention_mask=mask)
    else:
        parts = [(rows, model(input_ids=ids[rows, cols], attention_mask=mask[rows, cols]))
                 for rows, cols in data.length_groups(mask, groups)]
        back = torch.cat([rows for rows, _ in parts]).argsort()
        out = SimpleNamespace(**{name: torch.cat([getattr(o, name) for _, o in parts])[back]
                                 for name in ROW_OUTPUTS if getattr(parts[0][1], name, None) is not None})
    return out, out.logits.squeeze(-1).float() - reward_offset(model)


def _forward(model, batch: dict, groups: int = 1):
    """(the model's output on the batch's N responses, [B, K_max] rewards with 0 on padding slots);
    `groups` as in `_row_forward`."""
    out, flat = _row_forward(model, batch["input_ids"], batch["attention_mask"], groups)
    mask = batch["mask"].to(flat.device)
    return out, flat.new_zeros(mask.shape).masked_scatter(mask, flat)


def rewards(model, batch: dict) -> torch.Tensor:
    """[B, K_max] scalar rewards of a group batch (0 on padding slots)."""
    return _forward(model, batch)[1]


def kway_loss(model, batch: dict, lm_coef: float = 0.0, groups: int = 1) -> tuple[torch.Tensor, dict]:
    """The K-way ranking loss of the batch; with `lm_coef` > 0 (a likelihood reward model only)
    plus lm_coef x the trunk's mean next-token loss on each prompt's best-ranked responses (rank 0,
    all of them where several tie), as Yang et al. 2024 regularise a reward model's hidden states.
    `groups` > 1: the batch's responses as that many forward passes by length (`_row_forward`)."""
    out, r = _forward(model, batch, groups)
    ranks, mask = batch["ranks"].to(r.device), batch["mask"].to(r.device)
    loss = kway_ranking_loss(r, ranks, mask)
    stats = {"rm/train_accuracy": pairwise_accuracy(r.detach(), ranks, mask).item()}
    if lm_coef:
        log_likelihood = getattr(out, "response_log_likelihood", None)
        if log_likelihood is None:
            raise ValueError(f"reward_model.lm_coef {lm_coef} needs a likelihood reward model "
                             "(reward_model.likelihood_coef > 0): the paper's head has no LM head")
        best = ranks[mask] == 0  # the flat rows in the order masked_scatter placed them
        lm_loss = -(log_likelihood[best] / out.response_tokens[best].clamp(min=1)).mean()
        loss = loss + lm_coef * lm_loss
        stats["rm/lm_loss"] = lm_loss.item()
    return loss, stats


def score_tokens(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int) -> torch.Tensor:
    """One scalar reward per row of token ids whose real tokens are contiguous (left padding,
    right padding or both, as in a rollout), computed like `score` computes it on text: the rows
    are moved to right padding, the layout the RM was trained on. Shape [B]."""
    from rlhf.likelihood_reward import leading_padding

    width = input_ids.shape[1]
    cols = torch.arange(width, device=input_ids.device)
    ids = input_ids.gather(1, (cols + leading_padding(attention_mask)).clamp(max=width - 1))
    mask = (cols < attention_mask.sum(1, keepdim=True)).long()
    ids = torch.where(mask.bool(), ids, pad_id)
    return model(input_ids=ids, attention_mask=mask).logits.squeeze(-1).float() - reward_offset(model)


def ranking_batches(tokenizer, table, batch_size: int, max_len: int, seed: int):
    """Endless shuffled batches of whole prompts, each with all K of its ranked responses."""
    epoch = 0
    while True:
        t = table.sample(frac=1.0, random_state=seed + epoch)
        for i in range(0, len(t), batch_size):
            b = t.iloc[i:i + batch_size]
            yield group_batch(tokenizer, list(b.prompt), [list(r) for r in b.responses],
                              [list(r) for r in b.ranks], max_len)
        epoch += 1


def rankable(table):
    """The rows of a rankings table (prompt, responses, ranks) with two responses ranked apart, and
    how many had none: a prompt whose responses all tie costs forward passes and teaches nothing."""
    keep = table.ranks.map(lambda r: len(set(r)) > 1)
    return table[keep].reset_index(drop=True), int((~keep).sum())


def train_steps(prompts: int, c, processes: int = 1) -> int:
    """Optimizer steps of `c.epochs` passes over `prompts` prompts (`c`: the reward_model params)."""
    return c.epochs * math.ceil(prompts / (c.batch_size * c.grad_accum * processes))


def train(model, tokenizer, table, c, seed: int, accel, **fit_kwargs) -> list[dict]:
    """The reward_model stage's training: the K-way loss (plus `c.lm_coef` x the LM loss on the
    best-ranked responses) over shuffled batches of whole prompts of `table` (rankable rows),
    `train_steps` steps at `c.lr` (`c`: the reward_model params), cosine schedule after
    `c.warmup_steps`; `fit_kwargs` go to `train.fit` (logging, checkpoints). The per-step stats."""
    loss = functools.partial(kway_loss, lm_coef=c.lm_coef, groups=c.length_groups)
    return fit(model, ranking_batches(tokenizer, table, c.batch_size, models.max_positions(model), seed), loss,
               steps=train_steps(len(table), c, accel.num_processes), lr=c.lr, warmup_steps=c.warmup_steps,
               grad_accum=c.grad_accum, accel=accel, prefix="rm", activation_checkpointing=c.activation_checkpointing,
               lora=c.lora, **fit_kwargs)


def untrained(sft: str | Path, tokenizer, c):
    """`from_sft(sft, c.likelihood_coef)` with the tokenizer's padding id, as training needs it."""
    model = from_sft(sft, c.likelihood_coef)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model


def train_one(sft: str | Path, tokenizer, table, c, seed: int, accel, **fit_kwargs):
    """One reward model of seed `seed` (the head's initialisation and the batch order): `untrained`,
    then `train`. The model and its per-step stats."""
    set_seed(seed)
    model = untrained(sft, tokenizer, c)
    return model, train(model, tokenizer, table, c, seed, accel, **fit_kwargs)


def average_states(states: list[dict]) -> dict:
    """The element-wise mean of state dicts of one architecture, each tensor in its own dtype (a
    fresh tensor even for one state)."""
    return {k: sum(s[k].float() for s in states).div(len(states)).to(states[0][k].dtype) for k in states[0]}


def train_averaged(sft: str | Path, tokenizer, table, c, seed: int, accel, *, on_step=None,
                   checkpoint_dir: str | Path | None = None, checkpoint_every: int = 0,
                   run_id: str = "") -> tuple[torch.nn.Module, list[dict], list[dict]]:
    """`c.average_seeds` reward models, each `from_sft(sft, c.likelihood_coef)` trained by `train`
    on `table` with seed `seed + i` (the head's initialisation and the batch order), and their
    weights averaged into one: WARM (Rame et al. 2024, "WARM: On the Benefits of Weight Averaged
    Reward Models"): members that share the SFT initialisation stay close enough in weight space to
    average, and the average is more reliable than a single member. `average_seeds` 1 is the
    single model trained with `seed`.

    Returns the averaged model, every member's per-step stats in order (each row with `rm/member`;
    `on_step` gets a step that counts on across members), and the members' state dicts. With a
    `checkpoint_dir`, each member checkpoints into `member<i>/` and a finished member's weights and
    stats are kept as `member<i>.pt` (with `run_id`), so a rerun after a kill trains only what was
    not finished; the caller removes the folder."""
    steps = train_steps(len(table), c, accel.num_processes)
    if checkpoint_dir:
        Path(checkpoint_dir).mkdir(parents=True, exist_ok=True)
    model, history, states = None, [], []
    for i in range(c.average_seeds):
        member_id = fingerprint(run_id, i)
        done = Path(checkpoint_dir) / f"member{i}.pt" if checkpoint_dir else None
        saved = torch.load(done, map_location="cpu", weights_only=True) if done and done.exists() else None
        if saved is not None and saved["run_id"] == member_id:
            model = untrained(sft, tokenizer, c)
            model.load_state_dict(saved["state"])
            rows = saved["history"]
        else:
            def member_step(step: int, row: dict, i: int = i) -> None:
                on_step(i * steps + step, {**row, "rm/member": float(i)})

            model, rows = train_one(sft, tokenizer, table, c, seed + i, accel, on_step=on_step and member_step,
                                    checkpoint_dir=Path(checkpoint_dir) / f"member{i}" if checkpoint_dir else None,
                                    checkpoint_every=checkpoint_every, run_id=member_id)
            rows = [{**r, "rm/member": float(i)} for r in rows]
            if done is not None and accel.is_main_process:
                torch.save({"run_id": member_id, "state": model.state_dict(), "history": rows}, done)
        states.append({k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        history += rows
    if len(states) > 1:
        model.load_state_dict(average_states(states))
    return model, history, states


@torch.no_grad()
def group_rewards(model, tokenizer, prompts: list[str], responses: list[list[str]],
                  batch_size: int = 128) -> list[list[float]]:
    """The reward of every response, grouped as given. The responses of all prompts are sorted by
    token length and scored `batch_size` rows per forward pass, so that a pass carries almost no
    padding; a row's reward does not depend on the rows beside it (up to float rounding)."""
    was_training = model.training
    model.eval()
    examples = data.encode_pairs(tokenizer, [p for p, rs in zip(prompts, responses) for _ in rs],
                                 [r for rs in responses for r in rs], models.max_positions(model))
    flat = data.map_by_length(examples, batch_size, tokenizer.pad_token_id,
                              lambda b: _row_forward(model, b["input_ids"], b["attention_mask"])[1].tolist())
    model.train(was_training)
    cuts = list(itertools.accumulate(len(rs) for rs in responses))
    return [flat[end - len(rs):end] for rs, end in zip(responses, cuts)]


def score(model, tokenizer, prompts: list[str], responses: list[str], batch_size: int = 128) -> list[float]:
    """One scalar reward per (prompt, response)."""
    return [g[0] for g in group_rewards(model, tokenizer, prompts, [[r] for r in responses], batch_size)]


# -- the bias shift: demonstrations score mean 0 -----------------------------------------------------

def _final_norm(model):
    """The LayerNorm whose output the scalar head reads, for the families known here."""
    for path in ("transformer.ln_f", "gpt_neox.final_layer_norm", "model.decoder.final_layer_norm"):
        module = model
        for name in path.split("."):
            module = getattr(module, name, None)
        if isinstance(module, torch.nn.LayerNorm):
            return module
    return None


def reward_offset(model) -> float:
    """What the rewards computed here subtract from the model's output (0 unless the shift could
    not go into the weights)."""
    return float(getattr(getattr(model, "config", None), OFFSET_KEY, 0.0))


@torch.no_grad()
def shift_rewards(model, shift: float) -> None:
    """Subtract `shift` from every reward the model gives, in its own weights where it can, so that
    a plain `AutoModelForSequenceClassification.from_pretrained` gives shifted rewards. A head with
    a bias takes it there. GPT-2's head (`score`) has none, but it reads the final LayerNorm's output
    gamma * norm(h) + beta, so beta -= shift * w / |w|^2 lowers w . output by exactly `shift`
    (that LayerNorm feeds nothing else). Llama-style models (Qwen2, Mistral, Gemma, ...) have
    neither: a bias-free head reads an RMSNorm, whose output no weight can move by a constant, so
    the shift goes to the config as OFFSET_KEY, which every reward computed here subtracts; a plain
    load of such a model gives the unshifted reward. The total shift is in the config as SHIFT_KEY."""
    head = getattr(model, "score", None) or getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Linear) or head.out_features != 1:
        raise ValueError(f"{type(model).__name__}: no single-output linear head (score/classifier) found")
    norm = _final_norm(model)
    if head.bias is not None:
        head.bias -= shift
    elif norm is not None and norm.bias is not None:
        w = head.weight[0].float()
        norm.bias -= (shift * w / w.dot(w)).to(norm.bias.dtype)
    else:
        setattr(model.config, OFFSET_KEY, reward_offset(model) + shift)
    setattr(model.config, SHIFT_KEY, float(getattr(model.config, SHIFT_KEY, 0.0)) + shift)


def center_on(model, tokenizer, prompts: list[str], responses: list[str], check: int = 64) -> float:
    """Shift the model's rewards so that these (the demonstrations) score mean 0; returns the
    shift. The first `check` of them are scored again: each must have moved by the shift."""
    before = score(model, tokenizer, prompts, responses)
    shift = sum(before) / len(before)
    shift_rewards(model, shift)
    after = score(model, tokenizer, prompts[:check], responses[:check])
    drift = max(abs(b - shift - a) for a, b in zip(after, before))
    if drift > 1e-3:
        raise RuntimeError(f"the reward shift did not take: rewards moved up to {drift:.2e} away from -{shift}")
    return shift


# -- validation figures ------------------------------------------------------------------------------

def accuracy_counts(rewards_: list[list[float]], ranks: list[list[int]],
                    tie_credit: float = 0.0) -> tuple[float, int]:
    """(pairs ordered as ranked, ranked pairs) over groups; tied ranks give no pair, tied rewards
    count `tie_credit` of a pair (see losses.pairwise_counts)."""
    if not rewards_:
        return 0.0, 0
    r, mask = pad_groups(rewards_, 0.0)
    k, _ = pad_groups(ranks)
    correct, total = pairwise_counts(r, k, mask, tie_credit)
    return float(correct), int(total)


def validation_metrics(rewards_: list[list[float]], ranks: list[list[int]],
                       gold: list[list[float] | None], tie_credit: float = 0.0,
                       prompts: list[str] | None = None, noise: float | None = None,
                       bootstrap: int = 0, seed: int = 0) -> dict[str, float]:
    """`rm/val_accuracy` against the ranks, `rm/val_accuracy_gold` against the gold ordering (pairs
    with equal gold left out; only groups with gold scores), `rm/val_accuracy/k<K>` per K, and the
    val loss. With `prompts`, also `rm/val_accuracy_gold/<family>` per task family of the world
    (unrecognised prompts under 'other'): which kinds of answer the RM can judge. With `noise`, the
    simulated labeler's noise std when it ranked every group, also the RM against the labeler's own
    agreement with gold (issue 5 allows a shortfall of 0.05): `rm/val_labeler_gold_agreement` and
    `rm/val_labeler_shortfall` (that minus `rm/val_accuracy`) on these rankings, one draw of the
    labeler's noise, and the same expected over its draws, which no single draw moves:
    `rm/val_expected_accuracy`, `rm/val_expected_ceiling` (a ranker that orders every pair as gold
    does) and `rm/val_expected_shortfall` (the ceiling minus the RM's). With `bootstrap` B > 0 too,
    each shortfall's 95% interval over the val prompts (B resamples, seeded; `_lo`, `_hi`): how far
    another val set of this size could move it (`shortfall_intervals`)."""
    r, mask = pad_groups(rewards_, 0.0)
    k, _ = pad_groups(ranks)
    agree, total = accuracy_counts(rewards_, ranks, tie_credit)
    if total == 0:
        raise ValueError("no two validation responses are ranked apart: the reward model cannot be validated")
    out = {"rm/val_loss": kway_ranking_loss(r, k, mask).item(), "rm/val_accuracy": agree / total,
           "rm/val_pairs": total}
    # groups with gold scores, as (index, rewards, gold ranks): overall, then per task family
    with_gold = [(i, x, competition_ranks(g)) for i, (x, g) in enumerate(zip(rewards_, gold)) if g is not None]
    subsets = {"rm/val_accuracy_gold": with_gold}
    if prompts is not None:
        for i, x, g in with_gold:
            subsets.setdefault(f"rm/val_accuracy_gold/{evaluation.family(prompts[i])}", []).append((i, x, g))
    for key, groups in subsets.items():
        agree, total = accuracy_counts([x for _, x, _ in groups], [g for _, _, g in groups], tie_credit)
        if total:
            out[key] = agree / total
            if key == "rm/val_accuracy_gold":
                out["rm/val_gold_pairs"] = total
    for size in sorted({len(x) for x in rewards_}):
        agree, total = accuracy_counts([x for x in rewards_ if len(x) == size],
                                       [y for x, y in zip(rewards_, ranks) if len(x) == size], tie_credit)
        if total:
            out[f"rm/val_accuracy/k{size}"] = agree / total
    if noise is not None and gold and all(g is not None for g in gold):
        agree, total = gold_agreement(gold, ranks)
        expected, ceiling = expected_ranker_agreement(gold, rewards_, noise), expected_agreement(gold, noise)
        if total and expected is not None:
            labeler = float(agree) / total
            out.update({"rm/val_labeler_gold_agreement": labeler,
                        "rm/val_labeler_shortfall": labeler - out["rm/val_accuracy"],
                        "rm/val_expected_accuracy": expected, "rm/val_expected_ceiling": ceiling,
                        "rm/val_expected_shortfall": ceiling - expected})
            if bootstrap:
                out.update(shortfall_intervals(rewards_, ranks, gold, noise, bootstrap, seed, tie_credit))
    return out


def shortfall_intervals(rewards_: list[list[float]], ranks: list[list[int]], gold: list[list[float]],
                        noise: float, resamples: int, seed: int, tie_credit: float = 0.0) -> dict[str, float]:
    """95% percentile-bootstrap intervals, over the val prompts, of `rm/val_labeler_shortfall` and
    `rm/val_expected_shortfall` (`validation_metrics`), each pooled over the pairs of a resample as
    the figure itself is. Per prompt: its pairs of distinct gold, how many of them the labeler's
    ranking and the RM order alike (measured), and the ceiling's and the RM's expectations over the
    labeler's draws (`ranker_pairs`). The labeler ranks apart exactly the pairs of distinct gold
    (ties are decided once, `rlhf.comparisons`), so the measured shortfall's two agreements count
    the same pairs; where a prompt's do not (rankings edited by hand), no measured interval."""
    measured, expected, pairs, same_pairs = [], [], [], True
    for x, r, g in zip(rewards_, ranks, gold):
        labeler, n = gold_agreement([g], [r])
        if not n:
            continue
        rm, ranked = accuracy_counts([x], [r], tie_credit)
        same_pairs &= ranked == n
        measured.append(labeler - rm)
        expected.append(sum(keep - got for keep, got in ranker_pairs(g, x, noise)))
        pairs.append(n)
    figures = {"rm/val_expected_shortfall": expected} | ({"rm/val_labeler_shortfall": measured} if same_pairs else {})
    out = {}
    for key, values in figures.items():
        out[f"{key}_lo"], out[f"{key}_hi"] = evaluation.bootstrap_interval(values, resamples, seed, totals=pairs)
    return out


BASELINES = ("length", "sft_logprob")


def baseline_metrics(sft_lm, tokenizer, prompts: list[str], responses: list[list[str]], ranks: list[list[int]],
                     gold: list[list[float] | None]) -> dict[str, float]:
    """Two reference rankers on the validation groups the RM is judged on, to read its accuracy
    against: `length` (more words ranks higher) and `sft_logprob` (the SFT model's log p(response |
    prompt): how much of the ordering the model the RM starts from already holds, which the RM
    must learn to read out through its scalar head). A tie between two responses counts half.
    Keys `rm/baseline/<name>/val_accuracy` and `.../val_accuracy_gold`."""
    flat = lm.response_logprobs(sft_lm, tokenizer, [p for p, rs in zip(prompts, responses) for _ in rs],
                                [r for rs in responses for r in rs])
    cuts = list(itertools.accumulate(len(rs) for rs in responses))
    scores = {"length": [[float(len(r.split())) for r in rs] for rs in responses],
              "sft_logprob": [flat[end - len(rs):end] for rs, end in zip(responses, cuts)]}
    out = {}
    for name in BASELINES:
        m = validation_metrics(scores[name], ranks, gold, tie_credit=0.5)
        out.update({f"rm/baseline/{name}/{key[3:]}": m[key]
                    for key in ("rm/val_accuracy", "rm/val_accuracy_gold") if key in m})
    return out


def calibration(rewards_: list[list[float]], ranks: list[list[int]], bins: int = 10) -> list[dict]:
    """Predicted P(w beats l) = sigmoid(r_w - r_l) against how often w is ranked above l. Each
    ranked pair counts once, with w the response the model prefers, so predictions fall in
    [0.5, 1]; `bins` equal bins there, empty ones left out."""
    sums = [[0.0, 0.0, 0] for _ in range(bins)]
    for rs, ks in zip(rewards_, ranks):
        for i in range(len(rs)):
            for j in range(i + 1, len(rs)):
                if ks[i] == ks[j]:
                    continue
                w, lo = (i, j) if rs[i] >= rs[j] else (j, i)
                p = 1 / (1 + math.exp(-(rs[w] - rs[lo])))
                b = sums[min(bins - 1, int((p - 0.5) * 2 * bins))]
                b[0] += p
                b[1] += ks[w] < ks[lo]
                b[2] += 1
    return [{"bin_low": 0.5 + i / (2 * bins), "bin_high": 0.5 + (i + 1) / (2 * bins), "predicted": p / n,
             "observed": o / n, "pairs": n} for i, (p, o, n) in enumerate(sums) if n]


def plot_calibration(rows: list[dict], path: str | Path) -> None:
    """The calibration rows of `calibration` as a PNG: predicted against observed, and the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0.5, 1.0], [0.5, 1.0], color="grey", linestyle="--", label="calibrated")
    ax.plot([r["predicted"] for r in rows], [r["observed"] for r in rows], marker="o", label="reward model")
    ax.set_xlabel("predicted P(w beats l) = sigmoid(r_w - r_l)")
    ax.set_ylabel("observed: w ranked above l")
    ax.set_title("RM calibration on validation rankings")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
