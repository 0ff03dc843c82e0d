"""Batched sampling with the KV cache from left-padded prompts: the rollout generator of PPO.

A plain loop over `model(...)` with the cache instead of `model.generate`: fewer moving parts per
token, and on an accelerator no host round-trip per token (`sync_free`): tokens are drawn by an
exponential race instead of `torch.multinomial` (which waits for the device), the attention mask
goes in as a ready 4D mask (transformers would read a 2D one back to decide on its shape), and
whether every row has finished is read back only every 16 tokens (rows that finished emit pad).
"""

from __future__ import annotations

import torch


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted from each row's first real token (left padding gets position 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def response_mask(response: torch.Tensor, eos_id: int) -> torch.Tensor:
    """1 on response tokens up to and including the first EOS, 0 after it. Shape of `response`."""
    is_eos = (response == eos_id).long()
    eos_before = is_eos.cumsum(1) - is_eos  # EOSes strictly before each position
    return (eos_before == 0).long()


@torch.no_grad()
def sample(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, *,
           eos_id: int, pad_id: int, temperature: float = 1.0, generator: torch.Generator | None = None,
           sync_free: bool | None = None) -> torch.Tensor:
    """Responses [B, R] sampled from a causal LM (R <= max_new_tokens: shorter when every row
    stopped early); each row is pad after its first EOS.

    input_ids / attention_mask: left-padded prompts [B, P]. `temperature` 1 samples the model's
    own distribution. `generator` makes the draw reproducible without touching the global RNG.
    `sync_free` (default: off on CPU, where a read-back costs nothing, on elsewhere) draws the same
    distribution without a host round-trip per token (see the module's doc); with it off, the
    draws are those of `model.generate(do_sample=True)` under the same seed.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    device = input_ids.device
    sync_free = device.type != "cpu" if sync_free is None else sync_free
    check_every = 16 if sync_free else 1
    batch, prompt_len = input_ids.shape
    mask = torch.zeros(batch, prompt_len + max_new_tokens, dtype=torch.long, device=device)
    mask[:, :prompt_len] = attention_mask
    pos = position_ids(attention_mask)
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=pos, use_cache=True,
                logits_to_keep=1)
    cache, logits, next_pos = out.past_key_values, out.logits[:, -1], pos[:, -1:] + 1
    tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for t in range(max_new_tokens):
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        if sync_free:  # argmax of p / Exp(1) noise: a draw from p
            token = (probs / torch.empty_like(probs).exponential_(generator=generator)).argmax(-1)
        else:
            token = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        tokens[:, t] = torch.where(done, pad_id, token)
        mask[:, prompt_len + t] = (~done).long()  # the EOS itself is real; what follows it is pad
        done = done | (token == eos_id)
        if t == max_new_tokens - 1 or ((t + 1) % check_every == 0 and bool(done.all())):
            break
        # the new token's query may see every real key so far: [B, 1, 1, keys] when sync-free
        step_mask = mask[:, None, None, :prompt_len + t + 1].bool() if sync_free else mask[:, :prompt_len + t + 1]
        out = model(input_ids=tokens[:, t:t + 1], attention_mask=step_mask, position_ids=next_pos,
                    past_key_values=cache, use_cache=True)
        cache, logits, next_pos = out.past_key_values, out.logits[:, -1], next_pos + 1
    return tokens[:, :t + 1]
