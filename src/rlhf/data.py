"""Tokenised batches for every trainer: packed pretraining blocks, prompt/response pairs."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

import torch

from rlhf import ingest
from rlhf.losses import IGNORE
from rlhf.models import format_prompt, response_separator


def read_corpus(paths: Path | list[Path]) -> list[str]:
    """The `text` of every record of the corpus files, and of the data files under corpus folders
    (JSONL, JSON arrays, CSV, Parquet; the first three gzipped too; other files there, such as a
    README, are left out), in order. A record that is not an object with a string `text` fails,
    naming its file, line (row, record) and field: a corpus has no quarantine."""
    docs: list[str] = []
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        path = Path(path)
        if not path.exists():
            raise ValueError(f"{path}: no such corpus file or folder")
        if path.is_file() and not ingest.is_data_file(path):
            raise ValueError(f"{path}: not a corpus file type ({ingest.file_types()})")
        files = [path] if path.is_file() else [f for f in ingest.folder_files(path) if ingest.is_data_file(f)]
        for f in files:
            for n, rec, reason, _ in ingest.read_checked(f, ingest.read_raw(f, 10_000), ValueError):
                if rec is not None:
                    text = rec.get("text")
                    reason = None if isinstance(text, str) else (
                        "field 'text': missing" if text is None else f"field 'text': wrong type {type(text).__name__}")
                if reason:
                    raise ValueError(f"{f}: {ingest.place(f, n)}: {reason}")
                docs.append(text)
    return docs


def split_corpus(docs: list[str], seed: int, held_out: float = 0.05) -> tuple[list[str], list[str]]:
    """(train, validation) documents: a seeded shuffle, the first `held_out` share kept out of
    training. Pretraining and the ptx term train on the first part only, so evaluation's LM loss
    on the second measures held-out text for every policy."""
    docs = list(docs)
    random.Random(seed).shuffle(docs)
    n_val = max(1, int(len(docs) * held_out))
    return docs[n_val:], docs[:n_val]


def pack_blocks(tokenizer, docs: list[str], block: int) -> torch.Tensor:
    """All docs joined by EOS and cut into [N, block] token blocks (the tail is dropped). Each doc
    is tokenized with whatever the tokenizer adds (Llama's BOS token), as a prompt is."""
    ids: list[int] = []
    for enc in tokenizer(docs)["input_ids"]:
        ids.extend(enc + [tokenizer.eos_token_id])
    n = len(ids) // block
    if n == 0:
        raise ValueError(f"corpus too small: {len(ids)} tokens, fewer than one block of {block}")
    return torch.tensor(ids[: n * block]).view(n, block)


def lm_batch(x: torch.Tensor) -> dict:
    """A batch of packed blocks; labels equal inputs (plain LM loss)."""
    return {"input_ids": x, "attention_mask": torch.ones_like(x), "labels": x}


def block_batches(blocks: torch.Tensor, batch_size: int, seed: int) -> Iterator[dict]:
    """Endless shuffled batches of packed blocks."""
    g = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(len(blocks), generator=g).split(batch_size):
            yield lm_batch(blocks[idx])


def encode_pairs(tokenizer, prompts: list[str], responses: list[str], max_len: int) -> list[dict]:
    """Prompt + response + EOS token ids, with labels only on the response and EOS. The prompt is
    tokenized as sampling tokenizes it (with the BOS token of tokenizers that add one, as Llama's
    do), so SFT, the RM and PPO see a prompt alike. Too long, the prompt loses its start first, so
    the response (what carries the loss) survives."""
    out, sep = [], response_separator(tokenizer)
    for prompt, response in zip(prompts, responses):
        p = tokenizer(format_prompt(tokenizer, prompt))["input_ids"]
        r = (tokenizer(sep + response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id])[:max_len]
        p = p[len(p) - (max_len - len(r)):] if len(p) + len(r) > max_len else p
        ids = p + r
        labels = [IGNORE] * len(p) + r
        out.append({"input_ids": ids, "labels": labels})
    return out


def collate(examples: list[dict], pad_id: int, left: bool = False) -> dict:
    """Pad a list of {'input_ids', 'labels'?} to one batch of tensors, on the right, or on the left
    (`left`), which lines the responses up at the end of the batch so that the loss needs logits
    for the last few positions only (see lm.lm_loss)."""
    width = max(len(e["input_ids"]) for e in examples)
    ids = torch.full((len(examples), width), pad_id)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        cols = slice(width - n, width) if left else slice(0, n)
        ids[i, cols] = torch.tensor(e["input_ids"])
        mask[i, cols] = 1
        if "labels" in e:
            labels[i, cols] = torch.tensor(e["labels"])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def length_batches(examples: list[dict], batch_size: int) -> Iterator[list[int]]:
    """Indices of `examples` ({'input_ids', ...}) sorted by length, `batch_size` at a time: for
    inference, where which rows share a pass does not change their results (up to float rounding)
    and batches of similar lengths carry almost no padding."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["input_ids"]))
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]


def map_by_length(examples: list[dict], batch_size: int, pad_id: int, fn, left: bool = False) -> list:
    """`fn(batch)`, one value per row of a collated batch, for every example, in the examples'
    order; the batches are `length_batches` (padded on the left with `left`)."""
    out: list = [None] * len(examples)
    for idx in length_batches(examples, batch_size):
        for i, value in zip(idx, fn(collate([examples[i] for i in idx], pad_id, left=left))):
            out[i] = value
    return out


def length_groups(attention_mask: torch.Tensor, groups: int, left: bool = False) -> Iterator[tuple[torch.Tensor, slice]]:
    """A padded batch's rows sorted by length, longest first, and split into `groups` parts of
    near-equal row counts (empty parts skipped), each as (its row indices, the column slice that
    holds all of their real tokens: the last columns with left padding, the first with right
    padding). Running each part as its own forward pass reads less padding than the whole batch."""
    lengths = attention_mask.sum(-1)
    width = attention_mask.shape[1]
    for rows in torch.argsort(lengths, descending=True, stable=True).tensor_split(groups):
        if len(rows):
            w = int(lengths[rows].max())
            yield rows, slice(width - w, width) if left else slice(0, w)


def example_batches(examples: list[dict], batch_size: int, pad_id: int, seed: int,
                    left: bool = False) -> Iterator[dict]:
    """Endless shuffled epochs of collated batches (padded on the left with `left`)."""
    rng = random.Random(seed)
    order = list(range(len(examples)))
    while True:
        rng.shuffle(order)
        for i in range(0, len(order), batch_size):
            yield collate([examples[j] for j in order[i:i + batch_size]], pad_id, left)
