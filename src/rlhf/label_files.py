"""Imported label files, shared by demonstrations and comparisons: finding the files, reading their
records, cleaning text, the quarantine and its gate, the val split of imports.

`import_path` is one file or a folder of files (JSONL, JSON arrays, CSV, Parquet, in any mix).
Every record becomes a row or a quarantine entry with its file, line (the element's first line in
a JSON array, the row in Parquet) and reason, never its text. Text is normalised and PII-scrubbed
exactly as ingest does prompts.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rlhf import ingest, pii

SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
QUARANTINE_SCHEMA = pa.schema([("file", pa.string()), ("line", pa.int64()), ("reason", pa.string())])
PARQUET_BATCH = 10_000
# the counterpart of ingest._TRANSCRIPT: the assistant turn that follows a human turn
ASSISTANT_TURN = re.compile(r"\n\nAssistant:\s*(.*?)(?=\n\nHuman:|\Z)", re.S)
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")


class ImportFilesError(RuntimeError):
    """Imported files a stage cannot use at all (as opposed to bad records, which are quarantined)."""


# -- finding and reading files: each reader yields (line, record or None, reason or None) ---------

def import_files(path: Path, key: str, what: str) -> list[Path]:
    """The files to import: `path` itself, or every supported file under the folder `path`.
    `key` (the params key) and `what` (the kind of record) name them in errors."""
    if path.is_file():
        if path.suffix not in SUFFIXES:
            raise ImportFilesError(f"{path}: unsupported file type {path.suffix!r}; "
                                   f"expected one of {', '.join(SUFFIXES)}")
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file()
                       and not p.name.startswith("."))
        if not files:
            raise ImportFilesError(f"{path}: no {what} files ({', '.join(SUFFIXES)}) in this folder")
        return files
    raise ImportFilesError(f"{key} {str(path)!r}: no such file or folder")


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
        raise ImportFilesError(f"{path}: line {e.lineno} column {e.colno}: broken JSON array "
                               f"({e.msg}); fix the file (its records cannot be counted)") from None
    rest = text[i + 1:].strip()
    if rest:
        raise ImportFilesError(f"{path}: line {line_at(i)}: data after the end of the JSON array")


def _records(raw: Iterator[tuple]) -> Iterator[tuple[int, dict | None, str | None]]:
    """ingest's readers, without their raw text (which the quarantine never keeps)."""
    for n, rec, reason, _ in raw:
        yield n, rec, reason


def read_records(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """Every record of one file, as (line or row, record or None, reason or None)."""
    if path.suffix == ".json":
        return read_json(path)
    return _records(ingest.read_raw(path, PARQUET_BATCH))  # .jsonl, .csv, .parquet


# -- fields of a record -----------------------------------------------------------------------------

def clean_text(value: Any, name: str) -> tuple[str | None, str | None]:
    """Normalised, PII-scrubbed text, or the reason it cannot be used."""
    if value is None:
        return None, f"field '{name}': missing"
    if not isinstance(value, str):
        return None, f"field '{name}': wrong type {type(value).__name__}"
    text = ingest.normalize(value)
    if not text:
        return None, f"field '{name}': empty"
    return pii.scrub(text)[0], None


def record_id(rec: dict) -> tuple[str | None, str | None]:
    """The record's own `prompt_id` or `id` (PII-scrubbed), None when it has none, or a reason."""
    for key in ("prompt_id", "id"):
        value = rec.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return None, f"field '{key}': wrong type {type(value).__name__}"
        return pii.scrub(str(value))[0], None
    return None, None


def field_names(rec: dict) -> str:
    """The record's first field names, PII-scrubbed, for a 'no recognisable shape' reason."""
    return pii.scrub(", ".join(map(str, list(rec)[:10])) + (", ..." if len(rec) > 10 else ""))[0] or "none"


def is_transcript(value: Any) -> bool:
    """A "\\n\\nHuman: ... \\n\\nAssistant: ..." conversation."""
    return isinstance(value, str) and ingest._TRANSCRIPT.search(value) is not None


def first_human_turn(text: str) -> str:
    return ingest._TRANSCRIPT.search(text).group(1)


# -- all records of all files -----------------------------------------------------------------------

@dataclass
class Imported:
    rows: pd.DataFrame                      # the caller's columns
    quarantine: pd.DataFrame                # file, line, reason
    files: list[str] = field(default_factory=list)

    @property
    def read(self) -> int:
        return len(self.rows) + len(self.quarantine)

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


def read_all(path: Path, to_row: Callable[[dict, str, int], tuple[dict | None, str | None]],
             columns: list[str], key: str, what: str) -> Imported:
    """Every record of the file or folder `path` as a row (`to_row(record, file_id, line)`, which
    returns the row or the reason it has none) or a quarantine entry. A row's `prompt_id` must be
    unique: a repeated one is quarantined."""
    files = import_files(path, key, what)
    ids = _file_ids(files, path)
    rows: list[dict] = []
    bad: dict[str, list] = {c: [] for c in QUARANTINE_SCHEMA.names}
    seen: set[str] = set()
    for f in files:
        try:
            for line, rec, reason in read_records(f):
                row = None
                if rec is not None:
                    row, reason = to_row(rec, ids[f], line)
                if row is not None and row["prompt_id"] in seen:
                    row, reason = None, f"field 'prompt_id': duplicate id {row['prompt_id']!r}"
                if row is None:
                    bad["file"].append(str(f))
                    bad["line"].append(line)
                    bad["reason"].append(reason)
                    continue
                seen.add(row["prompt_id"])
                rows.append(row)
        except ImportFilesError:
            raise
        except (OSError, ValueError, pa.ArrowException, csv.Error) as e:
            raise ImportFilesError(f"{f}: cannot be read as {f.suffix[1:].upper()}: {e}") from None
    quarantine = pa.table(bad, schema=QUARANTINE_SCHEMA).to_pandas()
    return Imported(pd.DataFrame(rows, columns=columns), quarantine, [str(f) for f in files])


def empty_quarantine() -> pd.DataFrame:
    return pa.table({c: [] for c in QUARANTINE_SCHEMA.names}, schema=QUARANTINE_SCHEMA).to_pandas()


def write_quarantine(quarantine: pd.DataFrame, path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(quarantine, QUARANTINE_SCHEMA, preserve_index=False), path)


def gate_and_split(result: Imported, section: str, max_quarantine_fraction: float, val_fraction: float,
                   salt: str, quarantine_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write the quarantine to `quarantine_path`; fail when nothing was read or more than
    `max_quarantine_fraction` of the records (`<section>.max_quarantine_fraction`) were quarantined,
    naming the top reasons; else the imported rows split into (train, val)."""
    write_quarantine(result.quarantine, quarantine_path)
    if result.read == 0:
        raise ImportFilesError(f"no records in {', '.join(result.files)}")
    if result.quarantine_fraction > max_quarantine_fraction:
        raise ImportFilesError(
            f"{len(result.quarantine)} of {result.read} imported records ({result.quarantine_fraction:.1%}) "
            f"quarantined, over {section}.max_quarantine_fraction={max_quarantine_fraction}; see "
            f"{quarantine_path} (file, line, reason); top reasons: {result.top_reasons()}")
    return split_imported(result.rows, val_fraction, salt)


def split_imported(rows: pd.DataFrame, val_fraction: float, salt: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, val): a record goes to val by a salted hash of its prompt, so the same prompt always
    lands on the same side, whatever else is imported."""
    if val_fraction <= 0 or rows.empty:
        return rows.reset_index(drop=True), rows.iloc[:0]
    to_val = rows.prompt.map(lambda p: ingest.split_of(p, salt, val_fraction, 0.0) == "val")
    return rows[~to_val].reset_index(drop=True), rows[to_val].reset_index(drop=True)
