"""RL against the reward model with a KL penalty to the SFT model and pretraining-loss mixing.

First form: one policy-gradient update per rollout batch (REINFORCE with a whitened,
KL-penalised sequence reward), plus ptx_coef times the LM loss on a pretraining batch.
The full PPO-ptx (GAE, value model, clipped losses, PPO epochs) replaces this update.
"""

from __future__ import annotations

from typing import Iterator

import torch

from rlhf import lm, models, reward
from rlhf.config import PPOConfig
from rlhf.losses import token_logprobs


def response_mask(seqs: torch.Tensor, prompt_len: int, eos_id: int, pad_id: int) -> torch.Tensor:
    """1 on generated tokens up to and including the first EOS, 0 on prompt and padding.
    Shape [B, T-1], aligned with token_logprobs."""
    gen = seqs[:, prompt_len:]
    after_eos = (gen == eos_id).long().cumsum(1) - (gen == eos_id).long()  # EOSes strictly before t
    keep = (after_eos == 0) & (gen != pad_id)
    mask = torch.zeros_like(seqs, dtype=torch.float)
    mask[:, prompt_len:] = keep.float()
    return mask[:, 1:]


def sequence_logprobs(model, seqs: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-token log-probs of `seqs`, positions counted from each row's first real token."""
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=seqs, attention_mask=attention_mask, position_ids=position_ids).logits
    return token_logprobs(logits, seqs)


class PolicyGradientStep:
    """loss_fn for train.fit: rollout, score, KL-penalise, policy-gradient + ptx loss."""

    def __init__(self, ref, rm, tokenizer, cfg: PPOConfig, ptx_batches: Iterator[dict] | None):
        self.ref, self.rm, self.tok, self.cfg, self.ptx = ref, rm, tokenizer, cfg, ptx_batches

    def __call__(self, policy, prompts: list[str]) -> tuple[torch.Tensor, dict]:
        tok, cfg = self.tok, self.cfg
        device = next(policy.parameters()).device
        # 1. generate: left-padded batched sampling with the KV cache
        tok.padding_side = "left"
        enc = tok([models.format_prompt(p) for p in prompts], return_tensors="pt", padding=True).to(device)
        tok.padding_side = "right"
        policy.eval()
        with torch.no_grad():
            seqs = policy.generate(**enc, do_sample=True, temperature=cfg.temperature, top_k=0, top_p=1.0,
                                   max_new_tokens=cfg.max_new_tokens, pad_token_id=tok.pad_token_id,
                                   eos_token_id=tok.eos_token_id)
        policy.train()
        plen = enc["input_ids"].shape[1]
        mask = response_mask(seqs, plen, tok.eos_token_id, tok.pad_token_id)
        attn = torch.cat([enc["attention_mask"], mask[:, plen - 1:].long()], dim=1)
        # 2. score: the RM's scalar on the decoded response
        responses = [t.strip() for t in tok.batch_decode(seqs[:, plen:], skip_special_tokens=True)]
        scores = torch.tensor(reward.score(self.rm, tok, prompts, responses), device=device)
        # 3. KL-penalise: per-token log-ratio to the frozen reference, summed over the response
        with torch.no_grad():
            ref_logp = sequence_logprobs(self.ref, seqs, attn)
        logp = sequence_logprobs(policy, seqs, attn)
        kl = ((logp.detach() - ref_logp) * mask).sum(1)
        rewards = scores - cfg.kl_coef * kl
        # 4. advantages: whitened sequence rewards
        adv = (rewards - rewards.mean()) / (rewards.std() + 1e-8)
        # 5. policy-gradient loss, plus gamma * pretraining LM loss (PPO-ptx)
        pg_loss = -(adv * (logp * mask).sum(1)).mean()
        stats = {"ppo/rm_score": scores.mean().item(), "ppo/kl": kl.mean().item(),
                 "ppo/response_length": mask.sum(1).mean().item(), "ppo/loss/policy": pg_loss.item()}
        loss = pg_loss
        if cfg.ptx_coef > 0 and self.ptx is not None:
            ptx_loss, _ = lm.lm_loss(policy, next(self.ptx))
            loss = loss + cfg.ptx_coef * ptx_loss
            stats["ppo/ptx_loss"] = ptx_loss.item()
        return loss, stats
