"""Language-model losses and evaluation on batches: shared by pretrain, sft, ppo-ptx, evaluate."""

from __future__ import annotations

import torch

from rlhf.data import encode_pairs, length_groups, map_by_length
from rlhf.losses import IGNORE, gather_logprobs, masked_lm_loss
from rlhf.models import max_positions


def labelled_logits(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) from the first position whose next token carries a label to the end: on
    left-padded SFT batches (data.collate(left=True)) that is the response span, a fraction of the
    sequence, so the LM head runs there only (`logits_to_keep`). Positions are counted from each
    row's first real token, so left and right padding agree."""
    device = next(model.parameters()).device
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    labels = batch["labels"].to(device)
    labelled = (labels[:, 1:] != IGNORE).any(0).nonzero()
    first = int(labelled[0]) if len(labelled) else 0  # the first position whose logits carry a loss
    logits = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0),
                   logits_to_keep=ids.shape[1] - first).logits
    return logits, labels[:, first:]


def lm_loss(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """Next-token loss on the tokens that carry labels (all of them for pretraining, the
    response only for SFT: prompt tokens are IGNORE); the same loss as with every logit computed
    (see `labelled_logits`)."""
    return masked_lm_loss(*labelled_logits(model, batch)), {}


def lm_loss_by_length(groups: int):
    """`lm_loss` for left-padded batches whose rows differ in length: the rows sorted by length and
    run as `groups` forward passes, each cut to the widest of its own rows, the loss summed over
    tokens and divided by the whole batch's. The same loss and gradient as one pass, up to float
    rounding, with less padding read; the rows that share a step are not changed (unlike
    `group_by_length` in transformers' Trainer). `groups` 1 is `lm_loss` itself."""
    if groups <= 1:
        return lm_loss

    def loss(model, batch: dict) -> tuple[torch.Tensor, dict]:
        total, tokens = None, 0
        for rows, cols in length_groups(batch["attention_mask"], groups, left=True):
            part = {k: batch[k][rows, cols] for k in ("input_ids", "attention_mask", "labels")}
            n = int((part["labels"][:, 1:] != IGNORE).sum())
            if n:
                term = masked_lm_loss(*labelled_logits(model, part)) * n
                total, tokens = term if total is None else total + term, tokens + n
        return (total / tokens, {}) if tokens else lm_loss(model, batch)
    return loss


@torch.no_grad()
def mean_lm_loss(model, batches: list[dict]) -> float:
    """Token-weighted mean LM loss over a fixed list of batches."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for b in batches:
        n = int((b["labels"][:, 1:] != IGNORE).sum())
        total += lm_loss(model, b)[0].item() * n
        tokens += n
    model.train(was_training)
    return total / max(1, tokens)


@torch.no_grad()
def response_logprobs(model, tokenizer, prompts: list[str], responses: list[str], batch_size: int = 64) -> list[float]:
    """log p(response + EOS | prompt) under a causal LM, in the layout SFT trains on
    (`data.encode_pairs`: the template, the response, EOS): the sum over the response's tokens.
    Scored `batch_size` rows a pass, rows of similar length together (`data.map_by_length`)."""
    was_training = model.training
    model.eval()
    def summed(batch: dict) -> list[float]:
        logits, labels = labelled_logits(model, batch)
        targets = labels[:, 1:]
        lp = gather_logprobs(logits[:, :-1], targets.clamp(min=0))
        return lp.masked_fill(targets == IGNORE, 0.0).sum(-1).tolist()

    examples = encode_pairs(tokenizer, prompts, responses, max_positions(model))
    out = map_by_length(examples, batch_size, tokenizer.pad_token_id, summed, left=True)
    model.train(was_training)
    return out
