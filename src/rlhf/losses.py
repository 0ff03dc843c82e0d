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


def ranked_pairs(ranks: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """[B, K, K] bool: completion i is ranked above completion j, both real (mask True)."""
    better = ranks.unsqueeze(2) < ranks.unsqueeze(1)
    if mask is not None:
        better = better & mask.unsqueeze(2) & mask.unsqueeze(1)
    return better


def kway_ranking_loss(rewards: torch.Tensor, ranks: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """The paper's RM loss for prompts with K ranked completions.

    rewards: [B, K] scalar rewards; ranks: [B, K] integer rank of each completion (0 = best);
    mask: [B, K] bool, False on padding slots (prompts with fewer than K completions), which give
    no pair. Per prompt, the mean of -log sigmoid(r_w - r_l) over all its pairs where w is ranked
    above l (C(K,2) of them without ties; tied ranks give no pair); then the mean over the prompts
    that have at least one pair.
    """
    diff = rewards.unsqueeze(2) - rewards.unsqueeze(1)           # [B, K, K]: r_i - r_j
    better = ranked_pairs(ranks, mask).to(rewards.dtype)         # i ranked above j
    pair_loss = -F.logsigmoid(diff) * better
    n_pairs = better.sum((1, 2))
    has = n_pairs > 0
    if not has.any():
        return (rewards * 0).sum()  # no pair in the batch: a zero loss that still has a graph
    return (pair_loss.sum((1, 2))[has] / n_pairs[has]).mean()


def pairwise_counts(rewards: torch.Tensor, ranks: torch.Tensor,
                    mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(ranked pairs the rewards order the same way as the ranking, ranked pairs); a reward tie
    counts as wrong."""
    diff = rewards.unsqueeze(2) - rewards.unsqueeze(1)
    better = ranked_pairs(ranks, mask)
    return ((diff > 0) & better).sum(), better.sum()


def pairwise_accuracy(rewards: torch.Tensor, ranks: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of ranked pairs the rewards order the same way as the ranking."""
    correct, total = pairwise_counts(rewards, ranks, mask)
    return correct / total.clamp(min=1)
