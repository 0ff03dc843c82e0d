"""Loss functions as pure tensor functions: one copy each, unit-tested."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # label of a token that carries no loss (prompt and padding)


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the tokens whose label is not IGNORE."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE)


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log p(tokens[t] | tokens[<t]) for t >= 1: shape [B, T-1]."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return logp.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)


def kway_ranking_loss(rewards: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """The paper's RM loss for prompts with K ranked completions.

    rewards: [B, K] scalar rewards; ranks: [B, K] integer rank of each completion (0 = best).
    Per prompt, the mean of -log sigmoid(r_w - r_l) over all C(K,2) pairs where w is ranked above
    l; then the mean over prompts. Tied ranks give no pair.
    """
    diff = rewards.unsqueeze(2) - rewards.unsqueeze(1)           # [B, K, K]: r_i - r_j
    better = (ranks.unsqueeze(2) < ranks.unsqueeze(1)).float()   # i ranked above j
    pair_loss = -F.logsigmoid(diff) * better
    per_prompt = pair_loss.sum((1, 2)) / better.sum((1, 2)).clamp(min=1)
    return per_prompt.mean()


def pairwise_accuracy(rewards: torch.Tensor, ranks: torch.Tensor) -> torch.Tensor:
    """Share of ranked pairs the rewards order the same way as the ranking."""
    diff = rewards.unsqueeze(2) - rewards.unsqueeze(1)
    better = ranks.unsqueeze(2) < ranks.unsqueeze(1)
    return ((diff > 0) & better).sum() / better.sum().clamp(min=1)
