"""Demonstrations for SFT: written by the simulated labeler, or imported from files.

Import (`demonstrations.source: import`) reads `demonstrations.import_path`, one file or a folder of
files (JSONL, JSON arrays, CSV, Parquet, in any mix), and recognises the shape of each record:

- prompt/response: `prompt` and one of `response`, `completion`, `output` (or a `chosen` that is
  not a transcript, as in prompt/chosen/rejected preference records);
- instruction/input/output (Alpaca): the prompt is `instruction`, plus a blank line and `input`
  when that is not empty; the response is `output`;
- Human/Assistant transcripts in `text`, `chosen` or `conversation`: the first human turn and the
  first assistant turn after it (a `prompt` that is a transcript is reduced to its first human turn);
- message lists in `messages` (OpenAI: role/content; content may be a list of text parts) or
  `conversations` (ShareGPT: from/value), in `chosen` (a preference record's), or a `prompt` list
  followed by a `completion` (or `chosen`, ...) list (TRL's conversational prompt-completion and
  preference records): the first user turn and the first assistant turn after it; system messages
  are left out;
- message trees (OpenAssistant), one per record or one message per record (`rlhf.label_files`):
  the first message and its best-ranked reply (rank 0 unless that one was deleted or quarantined),
  or its only reply where none is ranked.

Files, records, cleaning (normalised and PII-scrubbed exactly as ingest does prompts) and the
quarantine (file, line, reason, never the text; the stage fails when too many) are
`rlhf.label_files`, shared with imported rankings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from rlhf import ingest, label_files, messages, world
from rlhf.hashing import prompt_role_mask
from rlhf.config import DemonstrationsConfig

COLUMNS = ["prompt_id", "prompt", "response"]
SPLITS = ("train", "val")
RESPONSE_FIELDS = ("response", "completion", "output", "chosen")
TRANSCRIPT_FIELDS = ("text", "chosen", "conversation")
VAL_SALT = "demonstrations"  # salt of the prompt hash that sends an imported record to val


class DemonstrationsError(label_files.ImportFilesError):
    """Demonstrations the stage cannot build (as opposed to bad records, which are quarantined)."""


# -- the simulated labeler ------------------------------------------------------------------------

def from_labeler(prompts: pd.DataFrame, refusal_rate: float = 0.0,
                 sign_off_rate: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The simulated demonstrators' answers (`world.demonstration`: the gold answer, with their
    habits at these rates); prompts the world cannot answer are set aside (returned second, with
    a reason) rather than dropped."""
    answers = [world.demonstration(i, p, refusal_rate, sign_off_rate)
               for i, p in zip(prompts.prompt_id, prompts.prompt)]
    has = pd.Series([a is not None for a in answers], index=prompts.index)
    demos = prompts[has].assign(response=[a for a in answers if a is not None])[COLUMNS]
    skipped = prompts[~has][["prompt_id"]].assign(reason="labeler: no task family recognised")
    return demos.reset_index(drop=True), skipped.reset_index(drop=True)


# -- one record to a demonstration ------------------------------------------------------------------

def _from_messages(*fields: tuple[Any, str]) -> tuple[tuple | None, str | None]:
    """(prompt, its field, response, its field) from a message list, or from a prompt's and its
    completion's read as one conversation (`fields`: (value, name) each): its first user message
    and the first assistant message after it; or a reason."""
    turns = []
    for value, name in fields:
        got, reason = messages.read(value, name)
        if got is None:
            return None, reason
        turns += [(name, m) for m in got]
    where = f"field '{fields[0][1]}'" if len(fields) == 1 else "fields " + ", ".join(f"'{n}'" for _, n in fields)
    first = next((i for i, (_, m) in enumerate(turns) if m.role == "user"), None)
    if first is None:
        return None, f"{where}: no user turn"
    reply = next((i for i, (_, m) in enumerate(turns) if m.role == "assistant" and i > first), None)
    if reply is None:
        return None, f"{where}: no assistant turn after the first user turn"
    (u_name, user), (a_name, answer) = turns[first], turns[reply]
    return (user.content, f"{u_name}[user].{user.key}", answer.content, f"{a_name}[assistant].{answer.key}"), None


def _from_transcript(text: str, name: str) -> tuple[tuple | None, str | None]:
    m = ingest._TRANSCRIPT.search(text)
    if not m:
        return None, f"field '{name}': no human turn"
    a = label_files.ASSISTANT_TURN.match(text, m.end())
    if not a:
        return None, f"field '{name}': no assistant turn after the first human turn"
    return (m.group(1), name, a.group(1), name), None


def _shape(rec: dict) -> tuple[tuple | None, str | None]:
    """(prompt, its field, response, its field) in the record's shape, or the reason there is none.
    Prompt and response may still be missing (None) or of the wrong type: `to_demo` checks them."""
    for name in ("messages", "conversations"):
        if rec.get(name) is not None:
            return _from_messages((rec[name], name))
    if messages.is_list(rec.get("prompt")):  # TRL's conversational prompt-completion and preference
        key = next((k for k in RESPONSE_FIELDS if messages.is_list(rec.get(k))), None)
        return _from_messages((rec["prompt"], "prompt"), *([(rec[key], key)] if key else []))
    if messages.is_list(rec.get("chosen")):  # preference records whose chosen side is a conversation
        return _from_messages((rec["chosen"], "chosen"))
    if "instruction" in rec:
        instruction, extra = rec["instruction"], rec.get("input")
        if extra is not None and not isinstance(extra, str):
            return None, f"field 'input': wrong type {type(extra).__name__}"
        if isinstance(instruction, str) and extra and extra.strip():
            instruction = f"{instruction}\n\n{extra}"
        return (instruction, "instruction", rec.get("output"), "output"), None
    if "prompt" in rec:
        prompt = rec["prompt"]
        if label_files.is_transcript(prompt):
            prompt = label_files.first_human_turn(prompt)
        key = next((k for k in RESPONSE_FIELDS if rec.get(k) is not None and not
                    (k == "chosen" and label_files.is_transcript(rec[k]))), None)
        if key is None:
            return (prompt, "prompt", None, "response"), None
        return (prompt, "prompt", rec[key], key), None
    for name in TRANSCRIPT_FIELDS:
        if label_files.is_transcript(rec.get(name)):
            return _from_transcript(rec[name], name)
    return None, ("no recognisable shape (expected prompt/response, instruction/output, a Human/Assistant "
                  f"transcript in text or chosen, or messages); fields: {label_files.field_names(rec)}")


def _from_tree(root: dict) -> tuple[tuple | None, str | None]:
    """(prompt, its field, response, its field) of a message tree: its first message and the best
    ranked reply to it (rank 0 unless that one is gone), or its only reply where none is ranked."""
    turns, reason = label_files.tree_turns(root)
    if turns is None:
        return None, reason
    replies = turns[0].replies  # depth first: the first message's own
    ranked = [r for r in replies if r[1] is not None]
    if not replies:
        return None, "field 'prompt.replies': no reply to the first message"
    if not ranked and len(replies) > 1:
        return None, (f"field 'prompt.replies': {len(replies)} unranked replies to the first message, "
                      "expected a ranked one")
    text, _, name = min(ranked, key=lambda r: r[1]) if ranked else replies[0]
    return (turns[0].turns[0][1], "prompt.text", text, name), None


def to_demo(rec: dict, file_id: str, line: int) -> tuple[dict | None, str | None]:
    """A demonstration row (COLUMNS), or None and the reason the record is quarantined."""
    shape, reason = _from_tree(rec["prompt"]) if label_files.is_tree(rec) else _shape(rec)
    if shape is None:
        return None, reason
    prompt_raw, prompt_field, response_raw, response_field = shape
    prompt, reason = label_files.clean_text(prompt_raw, prompt_field)
    if prompt is None:
        return None, reason
    response, reason = label_files.clean_text(response_raw, response_field)
    if response is None:
        return None, reason
    prompt_id, reason = label_files.record_id(rec)
    if reason:
        return None, reason
    return {"prompt_id": prompt_id or f"{file_id}:{line}", "prompt": prompt, "response": response}, None


# -- import -----------------------------------------------------------------------------------------

def from_files(path: Path, field_map: dict[str, str] | None = None) -> label_files.Imported:
    """Every record of the file or folder `path`, its fields renamed by `field_map`, as a
    demonstration or a quarantine row."""
    return label_files.read_all(path, to_demo, COLUMNS, "demonstrations.import_path", "demonstration", field_map)


# -- the stage ----------------------------------------------------------------------------------------

def run(cfg: DemonstrationsConfig, prompts_dir: Path, out_dir: Path) -> dict[str, float]:
    """The whole demonstrations stage: out_dir/{train,val,set_aside,quarantine}.parquet.
    Returns its metrics; raises DemonstrationsError when the stage must fail, leaving no
    train/val/set-aside files behind (the quarantine stays, to see why)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train.parquet", "val.parquet", "set_aside.parquet", "quarantine.parquet"):
        (out_dir / name).unlink(missing_ok=True)  # nothing stale survives a failed run
    demos: dict[str, pd.DataFrame] = {}
    skipped: dict[str, pd.DataFrame] = {}
    empty_skip = pd.DataFrame({"prompt_id": pd.Series(dtype=str), "reason": pd.Series(dtype=str)})
    quarantine = label_files.empty_quarantine()
    imported = records = 0
    if cfg.source == "import":
        result = from_files(Path(cfg.import_path), cfg.import_field_map)
        quarantine = result.quarantine
        demos["train"], val = label_files.gate_and_split(result, "demonstrations", cfg.max_quarantine_fraction,
                                                         cfg.import_val_fraction, VAL_SALT, out_dir / "quarantine.parquet")
        imported, records = len(result.rows), result.read
        skipped["train"] = empty_skip
        if cfg.import_val_fraction > 0:
            demos["val"], skipped["val"] = val, empty_skip
        else:  # validation keeps the labeler's demonstrations on the val prompts
            demos["val"], skipped["val"] = from_labeler(pd.read_parquet(prompts_dir / "val.parquet"),
                                                        cfg.refusal_rate, cfg.sign_off_rate)
        for split in SPLITS:
            if demos[split].empty:
                raise DemonstrationsError(
                    f"no {split} demonstrations: {imported} imported, demonstrations.import_val_fraction="
                    f"{cfg.import_val_fraction}" + ("" if split == "train" or cfg.import_val_fraction else
                                                    "; the labeler answered no val prompt: set "
                                                    "demonstrations.import_val_fraction to hold out imports"))
    else:
        for split in SPLITS:
            prompts = pd.read_parquet(prompts_dir / f"{split}.parquet")
            if prompts.empty:
                raise DemonstrationsError(f"no {split} prompts in {prompts_dir}")
            if split == "train":
                prompts = prompts[prompt_role_mask(list(prompts.prompt_id), 0.0, cfg.prompt_share)]
                if prompts.empty:
                    raise DemonstrationsError(f"no SFT prompts: no train prompt hashes into [0, {cfg.prompt_share}) "
                                              "(demonstrations.prompt_share)")
                if cfg.max_prompts:
                    prompts = prompts.head(cfg.max_prompts)
            demos[split], skipped[split] = from_labeler(prompts, cfg.refusal_rate, cfg.sign_off_rate)
            if demos[split].empty:
                raise DemonstrationsError(
                    f"the simulated demonstrators answer only the embedded world's prompts, and none of the "
                    f"{len(prompts)} {split} prompts is one; set demonstrations.source: import")
        label_files.write_quarantine(quarantine, out_dir / "quarantine.parquet")
    for split in SPLITS:
        demos[split][COLUMNS].to_parquet(out_dir / f"{split}.parquet", index=False)
    pd.concat([skipped[s].assign(split=s) for s in SPLITS], ignore_index=True).to_parquet(
        out_dir / "set_aside.parquet", index=False)
    return {**{f"demonstrations/{s}": len(demos[s]) for s in SPLITS},
            **{f"demonstrations/{s}_set_aside": len(skipped[s]) for s in SPLITS},
            "demonstrations/imported": imported, "demonstrations/quarantined": len(quarantine),
            "demonstrations/records_read": records}  # imported + quarantined, but for message trees
