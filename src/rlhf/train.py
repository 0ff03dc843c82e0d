"""One training loop for every stage that trains: pretrain, sft, reward_model, ppo.

The stage supplies the model, an iterator of batches and a loss function; the loop owns the
optimizer, the schedule, gradient clipping, the NaN guard and step metrics.
"""

from __future__ import annotations

import math
import random
from typing import Any, Callable, Iterator

import torch


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite: training stops instead of writing a broken model."""


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warmup to 1, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def fit(model: torch.nn.Module, batches: Iterator[Any], loss_fn: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict]],
        *, steps: int, lr: float, warmup_steps: int = 0, grad_clip: float = 1.0,
        weight_decay: float = 0.0, on_step: Callable[[int, dict], None] | None = None,
        prefix: str = "train") -> list[dict]:
    """Train `model` for `steps` optimizer steps; returns the per-step stats.

    `loss_fn(model, batch)` returns the loss and a dict of extra stats (floats). `on_step(step,
    stats)` receives `<prefix>/loss`, `<prefix>/lr` and those stats after every step.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, steps, warmup_steps))
    model.train()
    history = []
    for step in range(steps):
        batch = next(batches)
        loss, stats = loss_fn(model, batch)
        # stop before a NaN reaches the weights
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"{prefix}: loss is {loss.item()} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # clip the gradient
        grad_norm = torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        sched.step()
        row = {f"{prefix}/loss": loss.item(), f"{prefix}/lr": sched.get_last_lr()[0],
               f"{prefix}/grad_norm": float(grad_norm), **stats}
        history.append(row)
        if on_step is not None:
            on_step(step, row)
    model.eval()
    return history
