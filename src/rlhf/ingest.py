"""Prompt ingestion: validate, quarantine, normalise, deduplicate, cap per user, split by user.

Nothing is dropped silently: every raw row ends in a split, in quarantine (with file, line and
reason), or is counted as removed by dedup or by the per-user cap, and `Counts.check()` proves it.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pandas as pd

from rlhf.config import IngestConfig

REQUIRED = ("prompt_id", "user_id", "prompt")
OPTIONAL = ("org_id", "created_at", "source")
COLUMNS = REQUIRED[:2] + OPTIONAL + ("prompt",)
SPLITS = ("train", "val", "test")
RAW_SUFFIXES = (".jsonl",)


@dataclass
class Counts:
    read: int = 0
    quarantined: int = 0
    duplicates: int = 0
    capped: int = 0
    kept: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})

    def check(self) -> None:
        """Rows read must equal rows accounted for; anything else means rows were lost."""
        accounted = sum(self.kept.values()) + self.quarantined + self.duplicates + self.capped
        if accounted != self.read:
            raise RuntimeError(f"ingest lost rows: read {self.read}, accounted for {accounted} "
                               f"(splits {self.kept}, quarantined {self.quarantined}, "
                               f"duplicates {self.duplicates}, capped {self.capped})")


def raw_files(folders: list[Path]) -> list[Path]:
    """Raw shard files under `folders`, in a stable order."""
    files = []
    for folder in folders:
        if folder.exists():
            files += sorted(p for p in folder.rglob("*") if p.suffix in RAW_SUFFIXES and p.is_file())
    return files


def read_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw bytes) of each non-blank line."""
    with path.open("rb") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                yield n, line


def parse_row(line: bytes, max_chars: int) -> tuple[dict | None, str | None]:
    """A validated record, or None and the reason it is quarantined."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, f"undecodable bytes at offset {e.start}"
    try:
        rec = json.loads(text)
    except json.JSONDecodeError as e:
        return None, f"invalid JSON: {e.msg} at column {e.colno}"
    if not isinstance(rec, dict):
        return None, f"expected a JSON object, got {type(rec).__name__}"
    for key in REQUIRED:
        if key not in rec or rec[key] is None:
            return None, f"field '{key}': missing"
        if not isinstance(rec[key], (str, int)) or isinstance(rec[key], bool):
            return None, f"field '{key}': wrong type {type(rec[key]).__name__}"
        if str(rec[key]).strip() == "":
            return None, f"field '{key}': empty"
    if not isinstance(rec["prompt"], str):
        return None, f"field 'prompt': wrong type {type(rec['prompt']).__name__}"
    if len(rec["prompt"]) > max_chars:
        return None, f"field 'prompt': {len(rec['prompt'])} characters, over ingest.max_chars={max_chars}"
    for key in OPTIONAL:
        if rec.get(key) is not None and not isinstance(rec[key], str):
            return None, f"field '{key}': wrong type {type(rec[key]).__name__}"
    row = {k: (str(rec[k]) if rec.get(k) is not None else None) for k in COLUMNS}
    row["prompt"] = normalize(row["prompt"])
    return row, None


def normalize(text: str) -> str:
    """Unicode NFC and collapsed whitespace."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def split_of(key: str, salt: str, val_fraction: float, test_fraction: float) -> str:
    """The split of a user: a salted hash, so it never changes as new data arrives."""
    u = int.from_bytes(hashlib.sha256(f"{salt}:{key}".encode()).digest()[:8], "big") / 2**64
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


@dataclass
class IngestResult:
    splits: dict[str, pd.DataFrame]
    quarantine: pd.DataFrame
    counts: Counts


def ingest(files: list[Path], cfg: IngestConfig) -> IngestResult:
    counts = Counts()
    rows: list[dict] = []
    bad: list[dict] = []
    seen_ids: set[str] = set()
    for path in files:
        for line_no, line in read_lines(path):
            counts.read += 1
            row, reason = parse_row(line, cfg.max_chars)
            if row is not None and row["prompt_id"] in seen_ids:
                row, reason = None, f"field 'prompt_id': duplicate id {json.loads(line)['prompt_id']!r}"
            if row is None:
                bad.append({"file": str(path), "line": line_no, "reason": reason})
                continue
            seen_ids.add(row["prompt_id"])
            rows.append(row)
    counts.quarantined = len(bad)
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    # earliest first, so dedup and the cap keep a user's first prompts
    df = df.sort_values(["created_at", "prompt_id"], na_position="last", kind="stable")
    before = len(df)
    df = df.drop_duplicates("prompt", keep="first")
    counts.duplicates = before - len(df)
    before = len(df)
    df = df.groupby("user_id", sort=False).head(cfg.max_prompts_per_user)
    counts.capped = before - len(df)
    df = df.assign(split=[split_of(str(k) if k is not None else "", cfg.salt, cfg.val_fraction,
                                   cfg.test_fraction) for k in df[cfg.split_by]])
    splits = {s: df[df.split == s].drop(columns="split").reset_index(drop=True) for s in SPLITS}
    counts.kept = {s: len(splits[s]) for s in SPLITS}
    counts.check()
    return IngestResult(splits, pd.DataFrame(bad, columns=["file", "line", "reason"]), counts)
