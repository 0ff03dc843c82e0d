"""The reward model: the SFT trunk with a scalar head, trained on K-way rankings."""

from __future__ import annotations

from pathlib import Path

import torch

from rlhf import data
from rlhf.losses import kway_ranking_loss, pairwise_accuracy
from rlhf.models import max_positions


def from_sft(path: str | Path):
    """The SFT model with its LM head replaced by a fresh scalar head (no dropout)."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(
        str(path), num_labels=1, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


def load(path: str | Path):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(path), num_labels=1)


def group_batch(tokenizer, prompts: list[str], responses: list[list[str]], ranks: list[list[int]] | None,
                max_len: int) -> dict:
    """B prompts x K responses as one [B*K, T] batch (one forward pass), ranks as [B, K]."""
    flat_p = [p for p, rs in zip(prompts, responses) for _ in rs]
    flat_r = [r for rs in responses for r in rs]
    batch = data.collate(data.encode_pairs(tokenizer, flat_p, flat_r, max_len), tokenizer.pad_token_id)
    batch["k"] = len(responses[0])
    if ranks is not None:
        batch["ranks"] = torch.tensor(ranks)
    return batch


def rewards(model, batch: dict) -> torch.Tensor:
    """[B, K] scalar rewards of a group batch."""
    device = next(model.parameters()).device
    out = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
    return out.logits.squeeze(-1).view(-1, batch["k"])


def kway_loss(model, batch: dict) -> tuple[torch.Tensor, dict]:
    r = rewards(model, batch)
    ranks = batch["ranks"].to(r.device)
    return kway_ranking_loss(r, ranks), {"rm/train_accuracy": pairwise_accuracy(r.detach(), ranks).item()}


@torch.no_grad()
def score(model, tokenizer, prompts: list[str], responses: list[str], batch_size: int = 64) -> list[float]:
    """One scalar reward per (prompt, response)."""
    model.eval()
    max_len = max_positions(model)
    out: list[float] = []
    for i in range(0, len(prompts), batch_size):
        b = group_batch(tokenizer, prompts[i:i + batch_size], [[r] for r in responses[i:i + batch_size]],
                        None, max_len)
        out.extend(rewards(model, b).squeeze(-1).float().cpu().tolist())
    return out


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
