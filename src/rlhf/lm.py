"""Language-model losses and evaluation on batches: shared by pretrain, sft, ppo-ptx, evaluate."""

from __future__ import annotations

import torch

from rlhf.losses import IGNORE, masked_lm_loss


def lm_loss(model, batch: dict) -> tuple[torch.Tensor, dict]:
    """Next-token loss on the tokens that carry labels (all of them for pretraining, the
    response only for SFT: prompt tokens are IGNORE)."""
    device = next(model.parameters()).device
    logits = model(input_ids=batch["input_ids"].to(device),
                   attention_mask=batch["attention_mask"].to(device)).logits
    return masked_lm_loss(logits, batch["labels"].to(device)), {}


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
