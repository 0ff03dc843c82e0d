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
  `conversations` (ShareGPT: from/value): the first user turn and the first assistant turn after it;
  system messages before it are ignored.

Prompt and response are normalised and PII-scrubbed exactly as ingest does prompts. A record that
cannot be used is quarantined with its file, line (the element's first line in a JSON array, the
row in Parquet) and reason, never its text; the caller fails the stage when too many are.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rlhf import ingest, pii, world
from rlhf.hashing import prompt_role_mask
from rlhf.config import DemonstrationsConfig

COLUMNS = ["prompt_id", "prompt", "response"]
QUARANTINE_SCHEMA = pa.schema([("file", pa.string()), ("line", pa.int64()), ("reason", pa.string())])
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
SPLITS = ("train", "val")
RESPONSE_FIELDS = ("response", "completion", "output", "chosen")
TRANSCRIPT_FIELDS = ("text", "chosen", "conversation")
VAL_SALT = "demonstrations"  # salt of the prompt hash that sends an imported record to val
PARQUET_BATCH = 10_000
# the counterpart of ingest._TRANSCRIPT: the assistant turn that follows a human turn
_ASSISTANT = re.compile(r"\n\nAssistant:\s*(.*?)(?=\n\nHuman:|\Z)", re.S)
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")
_ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "bot": "assistant"}


class DemonstrationsError(RuntimeError):
    """Demonstrations the stage cannot build (as opposed to bad records, which are quarantined)."""


# -- the simulated labeler ------------------------------------------------------------------------

def from_labeler(prompts: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The gold answer as the demonstration; prompts the world cannot answer are set aside
    (returned second, with a reason) rather than dropped."""
    answers = [world.gold_answer(p) for p in prompts.prompt]
    has = pd.Series([a is not None for a in answers], index=prompts.index)
    demos = prompts[has].assign(response=[a for a in answers if a is not None])[COLUMNS]
    skipped = prompts[~has][["prompt_id"]].assign(reason="labeler: no task family recognised")
    return demos.reset_index(drop=True), skipped.reset_index(drop=True)


# -- reading files: each reader yields (line, record or None, reason or None) ----------------------

def import_files(path: Path) -> list[Path]:
    """The files to import: `path` itself, or every supported file under the folder `path`."""
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise DemonstrationsError(f"{path}: unsupported file type {path.suffix!r}; "
                                      f"expected one of {', '.join(SUFFIXES)}")
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                       and not p.name.startswith("."))
        if not files:
            raise DemonstrationsError(f"{path}: no demonstration files ({', '.join(SUFFIXES)}) in this folder")
        return files
    raise DemonstrationsError(f"demonstrations.import_path {str(path)!r}: no such file or folder")


def _has_undecodable(value: Any) -> bool:
    if isinstance(value, str):
        return bool(_UNDECODABLE.search(value))
    if isinstance(value, dict):
        return any(_has_undecodable(k) or _has_undecodable(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_undecodable(v) for v in value)
    return False


def read_json(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """A JSON array of records (line: where each element starts), one JSON object, or JSONL
    written to a .json file. An array broken part-way is an error: its records cannot be counted."""
    text = path.read_bytes().decode("utf-8", "surrogateescape")
    start = len(text) - len(text.lstrip())
    if not text.startswith("[", start):
        try:
            rec = json.loads(text)
        except json.JSONDecodeError:  # JSONL under a .json name, or one bad object: line by line
            yield from _records(ingest.read_jsonl(path))
            return
        if _has_undecodable(rec):
            yield 1, None, "undecodable bytes"
        elif not isinstance(rec, dict):
            yield 1, None, f"expected a JSON object or array, got {type(rec).__name__}"
        else:
            yield 1, rec, None
        return
    decoder = json.JSONDecoder()
    ws = re.compile(r"\s*")
    line, seen = 1, 0  # line number at offset `seen`

    def line_at(offset: int) -> int:
        nonlocal line, seen
        line += text.count("\n", seen, offset)
        seen = offset
        return line

    i = ws.match(text, start + 1).end()
    try:
        if text.startswith("]", i):
            return
        while True:
            rec, end = decoder.raw_decode(text, i)
            n = line_at(i)
            if _has_undecodable(rec):
                yield n, None, "undecodable bytes"
            elif not isinstance(rec, dict):
                yield n, None, f"expected a JSON object, got {type(rec).__name__}"
            else:
                yield n, rec, None
            i = ws.match(text, end).end()
            if text.startswith(",", i):
                i = ws.match(text, i + 1).end()
            elif text.startswith("]", i):
                break
            else:
                raise json.JSONDecodeError("expected ',' or ']'", text, i)
    except json.JSONDecodeError as e:
        raise DemonstrationsError(f"{path}: line {e.lineno} column {e.colno}: broken JSON array "
                                  f"({e.msg}); fix the file (its records cannot be counted)") from None
    rest = text[i + 1:].strip()
    if rest:
        raise DemonstrationsError(f"{path}: line {line_at(i)}: data after the end of the JSON array")


def _records(raw: Iterator[tuple]) -> Iterator[tuple[int, dict | None, str | None]]:
    """ingest's readers, without their raw text (which the quarantine never keeps)."""
    for n, rec, reason, _ in raw:
        yield n, rec, reason


def read_records(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """Every record of one file, as (line or row, record or None, reason or None)."""
    if path.suffix == ".json":
        return read_json(path)
    return _records(ingest.read_raw(path, PARQUET_BATCH))  # .jsonl, .csv, .parquet


# -- one record to a demonstration ------------------------------------------------------------------

def _content(message: dict, key: str) -> Any:
    """A message's text: a string, or OpenAI-style parts [{type: text, text: ...}] joined."""
    value = message.get(key)
    if isinstance(value, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    return value


def _from_messages(messages: Any, name: str) -> tuple[tuple | None, str | None]:
    """(prompt, its field, response, its field) from a message list, or a reason."""
    if isinstance(messages, str):  # a message list in a CSV cell
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError:
            return None, f"field '{name}': not a message list"
    if not isinstance(messages, list):
        return None, f"field '{name}': wrong type {type(messages).__name__}"
    role_key, content_key = ("from", "value") if name == "conversations" else ("role", "content")
    prompt = None
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return None, f"field '{name}': message {i} is a {type(m).__name__}, not an object"
        role = _ROLES.get(str(m.get(role_key)).lower())
        if prompt is None and role == "user":
            prompt = _content(m, content_key)
        elif prompt is not None and role == "assistant":
            return (prompt, f"{name}[user].{content_key}", _content(m, content_key),
                    f"{name}[assistant].{content_key}"), None
    if prompt is None:
        return None, f"field '{name}': no user turn"
    return None, f"field '{name}': no assistant turn after the first user turn"


def _from_transcript(text: str, name: str) -> tuple[tuple | None, str | None]:
    m = ingest._TRANSCRIPT.search(text)
    if not m:
        return None, f"field '{name}': no human turn"
    a = _ASSISTANT.match(text, m.end())
    if not a:
        return None, f"field '{name}': no assistant turn after the first human turn"
    return (m.group(1), name, a.group(1), name), None


def _is_transcript(value: Any) -> bool:
    return isinstance(value, str) and ingest._TRANSCRIPT.search(value) is not None


def _shape(rec: dict) -> tuple[tuple | None, str | None]:
    """(prompt, its field, response, its field) in the record's shape, or the reason there is none.
    Prompt and response may still be missing (None) or of the wrong type: `to_demo` checks them."""
    for name in ("messages", "conversations"):
        if rec.get(name) is not None:
            return _from_messages(rec[name], name)
    if isinstance(rec.get("chosen"), list):  # preference records whose chosen side is a message list
        return _from_messages(rec["chosen"], "chosen")
    if "instruction" in rec:
        instruction, extra = rec["instruction"], rec.get("input")
        if extra is not None and not isinstance(extra, str):
            return None, f"field 'input': wrong type {type(extra).__name__}"
        if isinstance(instruction, str) and extra and extra.strip():
            instruction = f"{instruction}\n\n{extra}"
        return (instruction, "instruction", rec.get("output"), "output"), None
    if "prompt" in rec:
        prompt = rec["prompt"]
        if _is_transcript(prompt):
            prompt = ingest._TRANSCRIPT.search(prompt).group(1)
        key = next((k for k in RESPONSE_FIELDS if rec.get(k) is not None and not
                    (k == "chosen" and _is_transcript(rec[k]))), None)
        if key is None:
            return (prompt, "prompt", None, "response"), None
        return (prompt, "prompt", rec[key], key), None
    for name in TRANSCRIPT_FIELDS:
        if _is_transcript(rec.get(name)):
            return _from_transcript(rec[name], name)
    fields = pii.scrub(", ".join(map(str, list(rec)[:10])) + (", ..." if len(rec) > 10 else ""))[0]
    return None, ("no recognisable shape (expected prompt/response, instruction/output, a Human/Assistant "
                  f"transcript in text or chosen, or messages); fields: {fields or 'none'}")


def _clean(value: Any, name: str) -> tuple[str | None, str | None]:
    """Normalised, PII-scrubbed text, or the reason it cannot be used."""
    if value is None:
        return None, f"field '{name}': missing"
    if not isinstance(value, str):
        return None, f"field '{name}': wrong type {type(value).__name__}"
    text = ingest.normalize(value)
    if not text:
        return None, f"field '{name}': empty"
    return pii.scrub(text)[0], None


def _prompt_id(rec: dict) -> tuple[str | None, str | None]:
    for key in ("prompt_id", "id"):
        value = rec.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return None, f"field '{key}': wrong type {type(value).__name__}"
        return pii.scrub(str(value))[0], None
    return None, None


def to_demo(rec: dict, file_id: str, line: int) -> tuple[dict | None, str | None]:
    """A demonstration row (COLUMNS), or None and the reason the record is quarantined."""
    shape, reason = _shape(rec)
    if shape is None:
        return None, reason
    prompt_raw, prompt_field, response_raw, response_field = shape
    prompt, reason = _clean(prompt_raw, prompt_field)
    if prompt is None:
        return None, reason
    response, reason = _clean(response_raw, response_field)
    if response is None:
        return None, reason
    prompt_id, reason = _prompt_id(rec)
    if reason:
        return None, reason
    return {"prompt_id": prompt_id or f"{file_id}:{line}", "prompt": prompt, "response": response}, None


# -- import -----------------------------------------------------------------------------------------

@dataclass
class Imported:
    demos: pd.DataFrame                     # COLUMNS
    quarantine: pd.DataFrame                # file, line, reason
    files: list[str] = field(default_factory=list)

    @property
    def read(self) -> int:
        return len(self.demos) + len(self.quarantine)

    @property
    def quarantine_fraction(self) -> float:
        return len(self.quarantine) / max(1, self.read)

    def top_reasons(self, n: int = 5) -> dict[str, int]:
        kinds = self.quarantine.reason.str.split(":").str[0].value_counts()
        return {k: int(v) for k, v in kinds.head(n).items()}


def _file_ids(files: list[Path], root: Path) -> dict[Path, str]:
    """The file stem, or the path under the import folder where two files share a stem."""
    stems = [f.stem for f in files]
    return {f: (f.stem if stems.count(f.stem) == 1 else
                (f.relative_to(root).with_suffix("").as_posix() if root.is_dir() else str(f.with_suffix(""))))
            for f in files}


def from_files(path: Path) -> Imported:
    """Every record of the file or folder `path` as a demonstration or a quarantine row."""
    files = import_files(path)
    ids = _file_ids(files, path)
    rows: list[dict] = []
    bad: dict[str, list] = {c: [] for c in QUARANTINE_SCHEMA.names}
    seen: set[str] = set()
    for f in files:
        try:
            for line, rec, reason in read_records(f):
                row = None
                if rec is not None:
                    row, reason = to_demo(rec, ids[f], line)
                if row is not None and row["prompt_id"] in seen:
                    row, reason = None, f"field 'prompt_id': duplicate id {row['prompt_id']!r}"
                if row is None:
                    bad["file"].append(str(f))
                    bad["line"].append(line)
                    bad["reason"].append(reason)
                    continue
                seen.add(row["prompt_id"])
                rows.append(row)
        except DemonstrationsError:
            raise
        except (OSError, ValueError, pa.ArrowException, csv.Error) as e:
            raise DemonstrationsError(f"{f}: cannot be read as {f.suffix[1:].upper()}: {e}") from None
    quarantine = pa.table(bad, schema=QUARANTINE_SCHEMA).to_pandas()
    return Imported(pd.DataFrame(rows, columns=COLUMNS), quarantine, [str(f) for f in files])


def split_imported(demos: pd.DataFrame, val_fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val): a record goes to val by a salted hash of its prompt, so the same prompt always
    lands on the same side, whatever else is imported."""
    if val_fraction <= 0 or demos.empty:
        return demos.reset_index(drop=True), demos.iloc[:0]
    to_val = demos.prompt.map(lambda p: ingest.split_of(p, VAL_SALT, val_fraction, 0.0) == "val")
    return demos[~to_val].reset_index(drop=True), demos[to_val].reset_index(drop=True)


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
    quarantine = pa.table({c: [] for c in QUARANTINE_SCHEMA.names}, schema=QUARANTINE_SCHEMA).to_pandas()
    imported = 0
    if cfg.source == "import":
        result = from_files(Path(cfg.import_path))
        quarantine = result.quarantine
        pq.write_table(pa.Table.from_pandas(quarantine, QUARANTINE_SCHEMA, preserve_index=False),
                       out_dir / "quarantine.parquet")
        if result.read == 0:
            raise DemonstrationsError(f"no records in {', '.join(result.files)}")
        if result.quarantine_fraction > cfg.max_quarantine_fraction:
            raise DemonstrationsError(
                f"{len(quarantine)} of {result.read} imported records ({result.quarantine_fraction:.1%}) "
                f"quarantined, over demonstrations.max_quarantine_fraction={cfg.max_quarantine_fraction}; "
                f"see {out_dir / 'quarantine.parquet'} (file, line, reason); top reasons: {result.top_reasons()}")
        imported = len(result.demos)
        demos["train"], val = split_imported(result.demos, cfg.import_val_fraction)
        skipped["train"] = empty_skip
        if cfg.import_val_fraction > 0:
            demos["val"], skipped["val"] = val, empty_skip
        else:  # validation keeps the labeler's demonstrations on the val prompts
            demos["val"], skipped["val"] = from_labeler(pd.read_parquet(prompts_dir / "val.parquet"))
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
            if split == "train":
                prompts = prompts[prompt_role_mask(list(prompts.prompt_id), 0.0, cfg.prompt_share)]
                if cfg.max_prompts:
                    prompts = prompts.head(cfg.max_prompts)
            demos[split], skipped[split] = from_labeler(prompts)
        pq.write_table(pa.Table.from_pandas(quarantine, QUARANTINE_SCHEMA, preserve_index=False),
                       out_dir / "quarantine.parquet")
    for split in SPLITS:
        demos[split][COLUMNS].to_parquet(out_dir / f"{split}.parquet", index=False)
    pd.concat([skipped[s].assign(split=s) for s in SPLITS], ignore_index=True).to_parquet(
        out_dir / "set_aside.parquet", index=False)
    return {**{f"demonstrations/{s}": len(demos[s]) for s in SPLITS},
            **{f"demonstrations/{s}_set_aside": len(skipped[s]) for s in SPLITS},
            "demonstrations/imported": imported, "demonstrations/quarantined": len(quarantine)}
