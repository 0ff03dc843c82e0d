"""One training loop for every stage that trains: pretrain, sft, reward_model, ppo.

The stage supplies the model, an endless iterator of batches and a loss function; the loop owns
device placement and mixed precision (accelerate), the optimizer, the LR schedule, gradient
accumulation and clipping, the NaN guard, periodic evaluation, step metrics, and checkpoints from
which a killed run resumes to the same result as an uninterrupted one.

One process, one GPU or many: under `torchrun --nproc_per_node N` (CPU, gloo) or
`accelerate launch --multi_gpu --num_processes N` every rank runs this loop on its own share of
the batches and accelerate averages the gradients.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import random
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

CHECKPOINT_FILE = "state.pt"


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite: training stops instead of writing a broken model."""


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def accelerator(device: str, grad_accum: int = 1):
    """The accelerate.Accelerator for `common.device`: CPU, or CUDA with bf16 autocast."""
    from accelerate import Accelerator

    from rlhf.models import pick_device

    on_cuda = pick_device(device).type == "cuda"
    return Accelerator(cpu=not on_cuda, mixed_precision="bf16" if on_cuda else "no",
                       gradient_accumulation_steps=grad_accum)


def cosine_with_warmup(step: int, total: int, warmup: int) -> float:
    """LR multiplier: linear warmup to 1, then cosine decay to 0 at `total`."""
    if step < warmup:
        return (step + 1) / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def fingerprint(*parts: Any) -> str:
    """A short hash of what a run depends on (config, data): a checkpoint resumes only a run
    with the same fingerprint."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 of a tensor's bytes (training data), for `fingerprint`."""
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


def folder_digest(path: str | Path) -> str:
    """sha256 over a folder's files, names and bytes (a checkpoint a run starts from), for `fingerprint`."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def fit(model: torch.nn.Module, batches: Iterator[Any] | Callable[[int], Iterator[Any]],
        loss_fn: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict]],
        *, steps: int, lr: float, warmup_steps: int = 0, grad_clip: float = 1.0,
        weight_decay: float = 0.0, grad_accum: int = 1, accel=None,
        on_step: Callable[[int, dict], None] | None = None,
        eval_every: int = 0, on_eval: Callable[[int, dict], None] | None = None,
        checkpoint_dir: str | Path | None = None, checkpoint_every: int = 0, run_id: str = "",
        state: dict | None = None, prefix: str = "train", activation_checkpointing: bool = False,
        lora=None) -> list[dict]:
    """Train `model` for `steps` optimizer steps of `grad_accum` micro-batches each; returns the
    per-step stats (of this process; a resumed run returns those since the checkpoint).

    `batches` is an endless iterator that every rank reads (each takes its share; a resumed run
    reads past what was consumed), or a resumable source: a callable that gets the number of
    micro-batches this rank already consumed (0 on a fresh run) and returns this rank's batches
    from there on, without replaying them (PPO, whose batches come from rollouts of the model).

    `loss_fn(model, batch)` returns the loss and a dict of extra float stats. `on_step(step,
    stats)` gets `<prefix>/loss`, `/lr`, `/grad_norm` and those stats after every step (main
    process only). `on_eval(step, state)` runs every `eval_every` steps and at the end; `state` is
    the caller's dict to keep things in (a best score), saved with the checkpoints and restored on
    resume. With a `checkpoint_dir`, training state is saved there every `checkpoint_every` steps
    and a later call with the same `run_id` (see `fingerprint`) resumes from it; the state file is
    removed when training ends (the caller's own files in the folder are left).
    `activation_checkpointing` recomputes each layer's activations in the backward pass instead of
    keeping them (`models.checkpoint_activations`): less memory, the same gradients up to float rounding.
    `lora` (a `config.LoraConfig` of rank > 0) trains low-rank updates of the model's layers instead
    of its weights (`models.add_lora`); when training ends they are folded into the weights
    (`models.merge_lora`), so the model returned has its own architecture and trainable flags again.
    """
    from rlhf import models

    accel = accel or accelerator("cpu", grad_accum)
    trainable = []  # under LoRA, the flags add_lora changes, to put back when the updates are merged
    if lora is not None and lora.rank:
        trainable = [(p, p.requires_grad) for p in model.parameters()]
        models.add_lora(model, lora)
        n = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        accel.print(f"{prefix}: LoRA of rank {lora.rank}: {n:,} of {total:,} parameters train ({n / total:.2%})")
    if activation_checkpointing:
        models.checkpoint_activations(model)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: cosine_with_warmup(s, steps, warmup_steps))
    model, opt = accel.prepare(model, opt)
    user_state = state if state is not None else {}
    ckpt = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir else None
    start = _resume(ckpt, run_id, model, opt, sched, user_state, accel) if ckpt else 0
    if callable(batches):
        micro = iter(batches(start * grad_accum))
    else:
        # each rank its own share of the batches; a resumed run skips what was already consumed
        micro = itertools.islice(batches, accel.process_index, None, accel.num_processes)
        micro = itertools.islice(micro, start * grad_accum, None)
    progress = _progress(steps, start, prefix, accel.is_main_process)
    model.train()
    history = []
    for step in range(start, steps):
        for _ in range(grad_accum):
            with accel.accumulate(model):
                loss, stats = loss_fn(model, next(micro))
                # stop before a NaN reaches the weights
                if not torch.isfinite(loss):
                    raise NonFiniteLossError(f"{prefix}: loss is {loss.item()} at step {step}")
                accel.backward(loss)
                if accel.sync_gradients:
                    # clip the gradient
                    grad_norm = accel.clip_grad_norm_(params, grad_clip)
                opt.step()
                opt.zero_grad(set_to_none=True)
        sched.step()
        row = {f"{prefix}/loss": loss.item(), f"{prefix}/lr": sched.get_last_lr()[0],
               f"{prefix}/grad_norm": float(grad_norm), **stats}
        history.append(row)
        progress.update(1)
        if on_step is not None and accel.is_main_process:
            on_step(step, row)
        done = step + 1
        if on_eval is not None and ((eval_every and done % eval_every == 0) or done == steps):
            on_eval(done, user_state)
            model.train()
        if ckpt and checkpoint_every and done % checkpoint_every == 0 and done < steps:
            _save(ckpt, run_id, done, model, opt, sched, user_state, accel)
    progress.close()
    accel.wait_for_everyone()
    if ckpt and accel.is_main_process:
        ckpt.unlink(missing_ok=True)
    models.merge_lora(unwrap(model))
    for p, flag in trainable:
        p.requires_grad_(flag)
    model.eval()
    return history


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DistributedDataParallel wrapper (itself otherwise)."""
    return getattr(model, "module", model)


def _progress(total: int, start: int, prefix: str, main: bool):
    from tqdm.auto import tqdm

    # off when not a terminal, so DVC and Prefect logs get no carriage-return noise
    return tqdm(total=total, initial=start, desc=prefix, disable=None if main else True, mininterval=5)


def _save(path: Path, run_id: str, step: int, model, opt, sched, user_state: dict, accel) -> None:
    if not accel.is_main_process:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"run_id": run_id, "step": step, "model": unwrap(model).state_dict(),
             "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "user_state": user_state,
             "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                     "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}}
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)  # a kill mid-write leaves the previous checkpoint intact


def _resume(path: Path, run_id: str, model, opt, sched, user_state: dict, accel) -> int:
    """Load the checkpoint at `path` if it belongs to this run; returns the step to start at."""
    if not path.exists():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("run_id") != run_id:
        accel.print(f"checkpoint {path} is from another configuration or data: starting over")
        return 0
    unwrap(model).load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    user_state.update(state["user_state"])
    torch.set_rng_state(state["rng"]["torch"])
    random.setstate(state["rng"]["python"])
    if state["rng"]["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    accel.print(f"resuming from {path} at step {state['step']}")
    return state["step"]
