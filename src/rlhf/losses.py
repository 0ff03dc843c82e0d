"""Loss functions and the masked statistics they use, as pure tensor functions: one copy each,
unit-tested. A mask is 1 on the tokens that count and 0 on padding; padding never reaches a loss
or a statistic."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100  # label of a token that carries no loss (prompt and padding)


def masked_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over the tokens whose label is not IGNORE."""
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.size(-1)), labels[:, 1:].reshape(-1),
                           ignore_index=IGNORE)


def gather_logprobs(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """log softmax(logits)[token] at each position: logits [B, T, V] already aligned with tokens
    [B, T]. Computed in float32 without materialising the full log-softmax."""
    logits = logits.float()
    return logits.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) at each position: [B, T, V] -> [B, T]."""
    logits = logits.float()
    return torch.logsumexp(logits, dim=-1) - (torch.softmax(logits, dim=-1) * logits).sum(-1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of x over the positions where mask is 1 (over `dim`, or over everything); values
    under a 0 are never read, so a NaN in padding cannot leak in."""
    x = torch.where(mask.bool(), x, torch.zeros((), dtype=x.dtype, device=x.device))
    if dim is None:
        return x.sum() / mask.sum().clamp(min=1)
    return x.sum(dim) / mask.sum(dim).clamp(min=1)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / std over the masked positions; 0 on padding."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    return torch.where(mask.bool(), (x - mean) * torch.rsqrt(var + eps), torch.zeros((), device=x.device))


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate (Schulman et al. 2017), per token, masked mean over the response.

    Returns (loss, clip fraction: share of tokens where the clipped term was the larger loss,
    approximate KL(old || new) = mean of (r - 1) - log r, Schulman's low-variance estimator)."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean((ratio - 1.0) - log_ratio, mask)
    return loss, clip_fraction, approx_kl


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                   mask: torch.Tensor, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: 0.5 * max((v - R)^2, (v_clipped - R)^2), v_clipped kept within `clip`
    of the value at rollout time; masked mean. Returns (loss, clip fraction)."""
    clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    unclipped_loss = (values - returns) ** 2
    clipped_loss = (clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped_loss > unclipped_loss).float(), mask)
    return loss, clip_fraction


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


def pairwise_counts(rewards: torch.Tensor, ranks: torch.Tensor, mask: torch.Tensor | None = None,
                    tie_credit: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(ranked pairs the rewards order the same way as the ranking, ranked pairs); a reward tie
    counts `tie_credit` of a pair: 0 (wrong) for a trained model, 0.5 for a coarse score such
    as a length that ties often and has no reason to prefer either side."""
    diff = rewards.unsqueeze(2) - rewards.unsqueeze(1)
    better = ranked_pairs(ranks, mask)
    correct = ((diff > 0) & better).sum()
    if tie_credit:
        correct = correct + tie_credit * ((diff == 0) & better).sum()
    return correct, better.sum()


def pairwise_accuracy(rewards: torch.Tensor, ranks: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Share of ranked pairs the rewards order the same way as the ranking."""
    correct, total = pairwise_counts(rewards, ranks, mask)
    return correct / total.clamp(min=1)
