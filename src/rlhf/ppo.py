"""PPO-ptx (Ouyang et al. 2022, section 3.5): RL of the SFT policy against the reward model, with a
per-token KL penalty to the SFT model and pretraining gradients mixed into every update.

One PPO iteration, phase by phase as in the paper:

  1. generate      sample responses to a batch of prompts with the KV cache (temperature 1)
  2. score         RM score of prompt + response; log-probs of policy and SFT reference; values
  3. KL-penalise   reward per token = -beta * (log pi - log pi_SFT), plus the RM score at the end
  4. advantages    GAE over the response tokens, whitened
  5. PPO epochs    clipped policy and value losses on minibatches (one optimizer step each)
                   + ptx_coef * the LM loss on a pretraining batch (PPO-ptx; 0 draws none)
  6. stats         the iteration's `ppo/...` metrics

`PPOTrainer.experience` is phases 1-4, `PPOTrainer.minibatches` and `PPOTrainer.loss` phase 5
(as the batches and the loss of `train.fit`, which owns the optimizer, clipping, schedule, NaN
guard and checkpoints), `PPOTrainer.on_step` phase 6. GAE, the KL penalty and the adaptive KL
controller are pure functions below; the PPO losses and whitening are in `losses`.
"""

from __future__ import annotations

import itertools
import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from rlhf import data, generation, losses, models, reward, train
from rlhf.config import PPOConfig

SAMPLES_PER_TABLE = 8  # responses in each logged table of samples


class KLExceededError(RuntimeError):
    """The policy drifted further from the SFT model than `ppo.max_kl` allows."""


# ---- the maths: pure functions ----

def kl_penalised_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                         mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards [B, R]: -kl_coef * (log pi(y_t) - log pi_ref(y_t)) on every response token,
    plus the RM score [B] on the last one (the EOS, or the last token of a cut response); 0 on
    padding. Also returns the per-token log-ratio (0 on padding), whose sum is the KL estimate."""
    log_ratio = torch.where(mask.bool(), logprobs - ref_logprobs, torch.zeros((), device=logprobs.device))
    last = mask.sum(1).long().clamp(min=1) - 1
    rewards = (-kl_coef * log_ratio).scatter_add(1, last[:, None], scores[:, None].to(log_ratio.dtype))
    return rewards, log_ratio


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016) over response tokens [B, R]:
    A_t = sum_{l >= t} (gamma * lam)^(l - t) * delta_l, delta_t = r_t + gamma * V_{t+1} - V_t, where
    the episode ends at the last masked token (V after it is 0). Returns (advantages, returns =
    advantages + values), 0 on padding. One matrix product instead of a loop over time."""
    keep = mask.bool()
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    values = torch.where(keep, values, zero)
    next_values = torch.nn.functional.pad(values[:, 1:], (0, 1))
    deltas = torch.where(keep, rewards + gamma * next_values - values, zero)
    steps = torch.arange(deltas.shape[1], device=deltas.device)
    lag = steps[:, None] - steps[None, :]  # [l, t]: how far delta_l lies after t
    discount = torch.where(lag >= 0, (gamma * lam) ** lag.clamp(min=0).to(deltas.dtype), zero)
    advantages = deltas @ discount
    return advantages, torch.where(keep, advantages + values, zero)


def adaptive_kl_coef(kl_coef: float, kl: float, episodes: int, target: float, horizon: int) -> float:
    """Ziegler et al. (2019)'s controller: beta grows when the measured KL is above `target` and
    shrinks below it, the error clipped to +-20%, applied in proportion to episodes / horizon."""
    error = min(max(kl / target - 1.0, -0.2), 0.2)
    return kl_coef * (1.0 + error * episodes / horizon)


# ---- models and forward passes ----

def disable_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Dropout off: the log-probs of a rollout and of its PPO update must come from one function."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def response_logits(lm, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_len: int) -> torch.Tensor:
    """Logits [B, R, V] that predict the last `response_len` tokens of left-padded sequences (the
    LM head runs on those positions only)."""
    out = lm(input_ids=input_ids, attention_mask=attention_mask,
             position_ids=generation.position_ids(attention_mask), logits_to_keep=response_len + 1, use_cache=False)
    return out.logits[:, :-1]


def logprobs_of(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """log pi(token) under the sampling distribution softmax(logits / temperature)."""
    return losses.gather_logprobs(logits if temperature == 1.0 else logits / temperature, tokens)


class PolicyAndValue(torch.nn.Module):
    """The two models PPO trains as one module: one optimizer, gradient clip and LR schedule (and
    one DDP wrapper) for both. The value model is the RM: its scalar head on every hidden state."""

    def __init__(self, policy, value_model):
        super().__init__()
        self.policy, self.value_model = policy, value_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_len: int,
                ptx_ids: torch.Tensor | None = None):
        """(logits [B, R, V] predicting the response tokens, values [B, R] of the states before
        them, the policy's logits on a pretraining batch or None)."""
        logits = response_logits(self.policy, input_ids, attention_mask, response_len)
        trunk = getattr(self.value_model, self.value_model.base_model_prefix)
        hidden = trunk(input_ids=input_ids, attention_mask=attention_mask,
                       position_ids=generation.position_ids(attention_mask), use_cache=False).last_hidden_state
        values = self.value_model.score(hidden[:, -response_len - 1:-1]).squeeze(-1).float()
        values = values - reward.reward_offset(self.value_model)  # as the RM's rewards
        ptx_logits = None if ptx_ids is None else self.policy(input_ids=ptx_ids, use_cache=False).logits
        return logits, values, ptx_logits


def encode_prompts(tokenizer, prompts: list[str], max_len: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts in the policy template, left-padded (an over-long one loses its start)."""
    with models.left_padded(tokenizer):
        enc = tokenizer([models.format_prompt(tokenizer, p) for p in prompts], return_tensors="pt", padding=True,
                        truncation=True, max_length=max_len)
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


@torch.no_grad()
def kl_to_reference(policy, ref, tokenizer, prompts: list[str], max_new_tokens: int, *, seed: int = 0,
                    temperature: float = 1.0, batch_size: int = 64) -> float:
    """KL(policy || ref) in nats per response on `prompts`: the mean summed log-ratio of responses
    sampled from the policy, the quantity `ppo.max_kl` bounds during training."""
    device = next(policy.parameters()).device
    max_len = models.max_positions(policy) - max_new_tokens
    gen = torch.Generator(device=device).manual_seed(seed)
    total = 0.0
    for i in range(0, len(prompts), batch_size):
        query, query_mask = encode_prompts(tokenizer, prompts[i:i + batch_size], max_len, device)
        response = generation.sample(policy, query, query_mask, max_new_tokens, eos_id=tokenizer.eos_token_id,
                                     pad_id=tokenizer.pad_token_id, temperature=temperature, generator=gen)
        mask = generation.response_mask(response, tokenizer.eos_token_id)
        ids, attn = torch.cat([query, response], 1), torch.cat([query_mask, mask], 1)
        n = response.shape[1]
        logp = logprobs_of(response_logits(policy, ids, attn, n), response, temperature)
        ref_logp = logprobs_of(response_logits(ref, ids, attn, n), response, temperature)
        total += torch.where(mask.bool(), logp - ref_logp, 0.0).sum().item()
    return total / len(prompts)


# ---- the trainer ----

@dataclass
class Rollout:
    """One iteration's experience (phases 1-4): [B, P] prompt tensors, [B, R] response tensors."""

    query: torch.Tensor
    query_mask: torch.Tensor
    response: torch.Tensor
    mask: torch.Tensor          # 1 on response tokens up to and including the first EOS
    logprobs: torch.Tensor
    values: torch.Tensor
    scores: torch.Tensor        # [B]
    rewards: torch.Tensor
    advantages: torch.Tensor    # whitened
    returns: torch.Tensor
    stats: dict[str, float]
    samples: list[dict]

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query, self.response], 1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.mask], 1)


class PPOTrainer:
    """PPO-ptx on `train.fit`: each PPO iteration is ppo_epochs x (batch_size / minibatch_size)
    optimizer steps of fit; checkpoints fall on iteration boundaries, so a killed run resumes
    exactly (every draw, of prompts, samples and minibatch orders, is seeded by the iteration).

    `state` (fit's, saved with checkpoints) keeps beta (`kl_coef`) and the per-iteration metrics
    (`history`). `on_iteration(iteration, metrics, samples)` runs on the main process after each
    iteration; `samples` is a list of dicts every `sample_every` iterations, else empty."""

    def __init__(self, model: PolicyAndValue, ref, rm, tokenizer, cfg: PPOConfig, prompts: list[str], *,
                 seed: int, accel, ptx_blocks: torch.Tensor | None = None):
        if not prompts:
            raise ValueError("ppo: no prompts to roll out")
        if cfg.ptx_coef > 0 and ptx_blocks is None:
            raise ValueError("ppo: ptx_coef > 0 needs pretraining blocks")
        self.model, self.tok, self.cfg, self.prompts = disable_dropout(model), tokenizer, cfg, prompts
        self.seed, self.accel, self.device = seed, accel, accel.device
        self.ref = disable_dropout(ref).to(self.device).eval().requires_grad_(False)
        self.rm = rm.to(self.device).eval().requires_grad_(False)
        self.ptx_blocks = ptx_blocks if cfg.ptx_coef > 0 else None  # plain PPO draws no pretraining batch
        self.per_iteration = cfg.ppo_epochs * (cfg.batch_size // cfg.minibatch_size)
        self.state: dict = {"kl_coef": cfg.kl_coef, "history": []}
        self.on_iteration: Callable[[int, dict, list[dict]], None] | None = None
        self._pending: dict[int, tuple[dict, list[dict]]] = {}
        self._rows: list[dict] = []
        self._clock = time.perf_counter()

    def train(self, *, checkpoint_dir=None, checkpoint_every: int = 0, run_id: str = "",
              on_iteration: Callable[[int, dict, list[dict]], None] | None = None) -> list[dict]:
        """`cfg.steps` iterations; returns the per-iteration metrics (on resume, from the start).
        `checkpoint_every` optimizer steps is rounded up to whole iterations."""
        self.on_iteration = on_iteration
        every = self.per_iteration * math.ceil(checkpoint_every / self.per_iteration) if checkpoint_every else 0
        train.fit(self.model, self.batches, self.loss, steps=self.cfg.steps * self.per_iteration, lr=self.cfg.lr,
                  accel=self.accel, prefix="ppo", on_step=self.on_step, checkpoint_dir=checkpoint_dir,
                  checkpoint_every=every, run_id=run_id, state=self.state,
                  activation_checkpointing=self.cfg.activation_checkpointing, lora=self.cfg.lora)
        return self.state["history"]

    def batches(self, start: int) -> Iterator[dict]:
        """fit's resumable batch source: phases 1-5, iteration after iteration, from `start`
        optimizer steps on (always an iteration boundary)."""
        if start % self.per_iteration:
            raise ValueError(f"ppo: cannot resume at step {start}, inside an iteration of {self.per_iteration}")
        ptx = None
        if self.ptx_blocks is not None:
            blocks = data.block_batches(self.ptx_blocks, self.cfg.ptx_batch_size, self.seed + self.accel.process_index)
            ptx = itertools.islice(blocks, start, None)  # one pretraining batch per optimizer step
        self._clock = time.perf_counter()
        for it in range(start // self.per_iteration, self.cfg.steps):
            rollout = self.experience(self.prompts_for(it), it)
            if self.accel.is_main_process:
                self._pending[it] = (rollout.stats, rollout.samples)
            yield from self.minibatches(rollout, it, ptx)

    def prompts_for(self, it: int) -> list[str]:
        """This rank's prompts of iteration `it`: one seeded draw without replacement for all ranks,
        split between them."""
        b, world, rank = self.cfg.batch_size, self.accel.num_processes, self.accel.process_index
        rng = random.Random(self._seed(it))
        drawn = rng.sample(self.prompts, b * world) if b * world <= len(self.prompts) else rng.choices(self.prompts, k=b * world)
        return drawn[rank * b:(rank + 1) * b]

    @torch.no_grad()
    def experience(self, prompts: list[str], it: int) -> Rollout:
        """Phases 1-4 on this rank's prompts."""
        cfg, tok, model = self.cfg, self.tok, self.model
        was_training = model.training
        model.eval()
        clock = [time.perf_counter()]

        def lap() -> float:
            if self.device.type == "cuda":
                torch.cuda.synchronize()  # three waits per iteration, so that the phase times are true
            clock.append(time.perf_counter())
            return clock[-1] - clock[-2]

        # 1. generate: left-padded prompts, sampled with the KV cache, each response ending at its EOS
        max_len = models.max_positions(model.policy) - cfg.max_new_tokens - 1  # room for the RM's EOS
        query, query_mask = encode_prompts(tok, prompts, max_len, self.device)
        gen = torch.Generator(device=self.device).manual_seed(self._seed(it) * 1009 + self.accel.process_index)
        with self.accel.autocast():
            response = generation.sample(model.policy, query, query_mask, cfg.max_new_tokens, eos_id=tok.eos_token_id,
                                         pad_id=tok.pad_token_id, temperature=cfg.temperature, generator=gen)
        mask = generation.response_mask(response, tok.eos_token_id)
        n = int(mask.sum(1).max())  # a sync-free sampler may run past the last EOS between its checks
        response, mask = response[:, :n], mask[:, :n]
        t_generate = lap()

        # 2. score: the RM on prompt + response + EOS (a cut response gets its EOS, as in RM
        #    training); log-probs of policy and SFT reference; values of the states
        ids, attn = torch.cat([query, response], 1), torch.cat([query_mask, mask], 1)
        ended = (response == tok.eos_token_id).any(1)
        rm_ids = torch.cat([ids, torch.where(ended, tok.pad_token_id, tok.eos_token_id)[:, None]], 1)
        rm_mask = torch.cat([attn, (~ended).long()[:, None]], 1)
        with self.accel.autocast():
            logits, values, _ = model(ids, attn, n)
            ref_logits = response_logits(self.ref, ids, attn, n)
            scores = reward.score_tokens(self.rm, rm_ids, rm_mask, tok.pad_token_id).float()
        logprobs = logprobs_of(logits, response, cfg.temperature)
        ref_logprobs = logprobs_of(ref_logits, response, cfg.temperature)
        entropy = losses.masked_mean(losses.entropy(logits if cfg.temperature == 1.0 else logits / cfg.temperature), mask)
        t_score = lap()

        # 3. KL-penalise: -beta * log-ratio at every token, the RM score at the last
        kl_coef = self.state["kl_coef"]
        rewards, log_ratio = kl_penalised_rewards(scores, logprobs, ref_logprobs, mask, kl_coef)

        # 4. advantages: GAE over the response, whitened over the rollout's tokens
        advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
        advantages = losses.masked_whiten(advantages, mask)

        # one read-back of the rollout's statistics, averaged over ranks (beta and the guard
        # rails must agree on every rank)
        summary = torch.stack([scores.mean(), log_ratio.sum(1).mean(), entropy, mask.sum(1).float().mean(),
                               rewards.sum(1).mean(), values.mean(), (~ended).float().mean()])
        if self.accel.num_processes > 1:
            summary = self.accel.reduce(summary, reduction="mean")
        score, kl, ent, length, total_reward, value, cut = summary.tolist()
        if not all(math.isfinite(v) for v in (score, kl, ent, total_reward, value)):
            raise train.NonFiniteLossError(f"ppo: non-finite rollout at iteration {it}: RM score {score}, KL {kl}, "
                                           f"entropy {ent}, value {value}")
        if kl > cfg.max_kl:
            raise KLExceededError(f"ppo: KL to the SFT model is {kl:.3f} nats per response at iteration {it}, over "
                                  f"ppo.max_kl {cfg.max_kl}: lower ppo.lr, raise ppo.kl_coef or set ppo.adaptive_kl")
        if cfg.adaptive_kl:
            self.state["kl_coef"] = adaptive_kl_coef(kl_coef, kl, cfg.batch_size * self.accel.num_processes,
                                                     cfg.target_kl, cfg.kl_horizon)
        t_advantages = lap()
        model.train(was_training)

        samples = []
        if cfg.sample_every and it % cfg.sample_every == 0 and self.accel.is_main_process:
            texts = tok.batch_decode(response[:SAMPLES_PER_TABLE], skip_special_tokens=True)
            samples = [{"iteration": it, "prompt": p, "response": r.strip(), "rm_score": s, "kl": k}
                       for p, r, s, k in zip(prompts, texts, scores.tolist(), log_ratio.sum(1).tolist())]
        stats = {"ppo/rm_score": score, "ppo/kl": kl, "ppo/kl_coef": kl_coef, "ppo/entropy": ent,
                 "ppo/response_length": length, "ppo/cut_fraction": cut, "ppo/reward": total_reward,
                 "ppo/value": value, "ppo/time/generate": t_generate, "ppo/time/score": t_score,
                 "ppo/time/advantages": t_advantages}
        return Rollout(query, query_mask, response, mask, logprobs, values, scores, rewards, advantages, returns,
                       stats, samples)

    def minibatches(self, rollout: Rollout, it: int, ptx: Iterator[dict] | None) -> Iterator[dict]:
        """Phase 5's batches: ppo_epochs passes over the rollout, each in a new seeded order. Each
        minibatch drops the columns that are padding in all of its rows (left of its longest
        prompt, right of its longest response): less compute, the same numbers."""
        ids, attn, prompt_len = rollout.input_ids, rollout.attention_mask, rollout.query.shape[1]
        lengths = torch.stack([rollout.query_mask.sum(1), rollout.mask.sum(1)]).cpu()  # one read-back
        order = torch.Generator().manual_seed(self._seed(it))
        for _ in range(self.cfg.ppo_epochs):
            for idx in torch.randperm(len(ids), generator=order).split(self.cfg.minibatch_size):
                n = int(lengths[1, idx].max())
                cols, resp = slice(prompt_len - int(lengths[0, idx].max()), prompt_len + n), slice(0, n)
                rows = idx.to(self.device)
                mb = {"input_ids": ids[rows, cols], "attention_mask": attn[rows, cols],
                      **{k: getattr(rollout, k)[rows, resp] for k in ("response", "mask", "logprobs", "values",
                                                                      "advantages", "returns")}}
                if ptx is not None:
                    mb["ptx"] = next(ptx)
                yield mb

    def loss(self, model, mb: dict) -> tuple[torch.Tensor, dict]:
        """Phase 5 on one minibatch: clipped policy loss + vf_coef * clipped value loss, plus
        ptx_coef * the LM loss on the minibatch's pretraining batch (PPO-ptx)."""
        cfg = self.cfg
        ptx = mb.get("ptx")
        ptx_ids = None if ptx is None else ptx["input_ids"].to(self.device)
        logits, values, ptx_logits = model(mb["input_ids"], mb["attention_mask"], mb["response"].shape[1], ptx_ids)
        logprobs = logprobs_of(logits, mb["response"], cfg.temperature)
        policy_loss, clip_fraction, approx_kl = losses.ppo_policy_loss(
            logprobs, mb["logprobs"], mb["advantages"], mb["mask"], cfg.clip_range)
        value_loss, value_clip_fraction = losses.ppo_value_loss(
            values, mb["values"], mb["returns"], mb["mask"], cfg.value_clip_range)
        loss = policy_loss + cfg.vf_coef * value_loss
        stats = {"ppo/loss/policy": policy_loss, "ppo/loss/value": value_loss, "ppo/clip_fraction": clip_fraction,
                 "ppo/value_clip_fraction": value_clip_fraction, "ppo/approx_kl": approx_kl}
        if ptx_logits is not None:
            stats["ppo/ptx_loss"] = ptx_loss = losses.masked_lm_loss(ptx_logits, ptx["labels"].to(self.device))
            loss = loss + cfg.ptx_coef * ptx_loss
        # one read-back for all of them
        return loss, dict(zip(stats, torch.stack([v.detach().float() for v in stats.values()]).tolist()))

    def on_step(self, step: int, row: dict) -> None:
        """Phase 6 (fit's on_step, main process): when an iteration's last minibatch is done, its
        metrics: the rollout's, the means over its minibatches, and seconds per phase."""
        self._rows.append(row)
        if (step + 1) % self.per_iteration:
            return
        it = step // self.per_iteration
        stats, samples = self._pending.pop(it)
        now = time.perf_counter()
        seconds, self._clock = now - self._clock, now
        metrics = {k: sum(r[k] for r in self._rows) / len(self._rows) for k in self._rows[0]}
        self._rows = []
        metrics.update(stats)
        metrics["ppo/time/update"] = seconds - sum(stats[f"ppo/time/{p}"] for p in ("generate", "score", "advantages"))
        metrics["ppo/time/iteration"] = seconds
        metrics["ppo/episodes_per_s"] = self.cfg.batch_size * self.accel.num_processes / seconds
        self.state["history"].append(metrics)
        if self.on_iteration is not None:
            self.on_iteration(it, metrics, samples)

    def _seed(self, it: int) -> int:
        return self.seed * 1_000_003 + it
