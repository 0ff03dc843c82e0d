"""Prompt ingestion: read, validate, quarantine, normalise, scrub PII, deduplicate, cap per user,
split by user, in bounded memory whatever the input size.

Three passes. (1) Stream every raw file in chunks: a bad row goes to quarantine with its file, line
and reason; a good one is normalised, PII-scrubbed and written to a temporary chunk, keeping only
small keys in memory. (2) Decide on the keys alone: dedup (exact, then shared long prefix), the
per-user cap (earliest first), the split of each user. (3) Stream the chunks again into the split
files. Nothing is dropped silently: `Counts.check()` proves that every row read is accounted for.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import sys
import tempfile
import unicodedata
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rlhf import jsontext, messages, pii
from rlhf.hashing import unit_hash
from rlhf.config import IngestConfig

REQUIRED = ("prompt_id", "user_id", "prompt")
OPTIONAL = ("org_id", "created_at", "source")
COLUMNS = ("prompt_id", "user_id", "org_id", "created_at", "source", "prompt")
SOURCES = ("labeler", "customer")
SPLITS = ("train", "val", "test")
FILE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")  # the data files ingest and label imports read
FILE_GZIPPED = (".jsonl", ".json", ".csv")  # read gzipped too (prompts.jsonl.gz); Parquet compresses itself
# what reading a file raises when the file itself is bad (truncated or corrupt gzip, broken Parquet)
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, pa.ArrowException, csv.Error)
SCHEMA = pa.schema([(c, pa.string()) for c in COLUMNS])
QUARANTINE_SCHEMA = pa.schema([("file", pa.string()), ("line", pa.int64()), ("reason", pa.string()),
                               ("raw", pa.string())])
USER_FIELD_PROBE = 100  # records of a file read before deciding it has no user IDs at all
_EXTRA = "\0extra"  # where csv puts the cells of a row longer than its header
JSON_CHUNK = 1 << 20  # bytes of a .json file read at a time
_JSON_DECODER = json.JSONDecoder()
_JSON_WS = re.compile(r"[ \t\n\r]*")
_UNDECODABLE = re.compile(r"[\udc80-\udcff]")  # bytes that are not UTF-8, decoded with surrogateescape
_UNITS = {".parquet": "row", ".json": "record"}  # what a reader's numbers count, where not lines
_TRANSCRIPT = re.compile(r"(?:^|\n\n)Human:\s*(.*?)(?=\n\nAssistant:|\Z)", re.S)


class IngestError(RuntimeError):
    """Input the stage cannot ingest at all (as opposed to bad rows, which are quarantined)."""


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
            raise IngestError(f"ingest lost rows: read {self.read}, accounted for {accounted} "
                              f"(splits {self.kept}, quarantined {self.quarantined}, "
                              f"duplicates {self.duplicates}, capped {self.capped})")


@dataclass
class IngestResult:
    counts: Counts
    users: dict[str, int]
    pii: dict[str, dict[str, int]]          # split -> PII type -> spans scrubbed
    reasons: dict[str, int]                 # quarantine reason (without details) -> rows
    files: list[str]


# -- reading: every reader yields (line, record or None, reason or None, raw text) -------------

def uncompressed_name(path: Path) -> Path:
    """The file's name without a .gz: x.jsonl for both x.jsonl and x.jsonl.gz."""
    return Path(path.name.removesuffix(".gz"))


def data_suffix(path: Path) -> str:
    """The suffix that names a file's format: .jsonl for both x.jsonl and x.jsonl.gz."""
    return uncompressed_name(path).suffix


def is_data_file(path: Path) -> bool:
    """Whether `path` is a data file ingest and label imports read: one of FILE_SUFFIXES, or of
    FILE_GZIPPED with .gz after it."""
    kind = data_suffix(path)
    return kind in FILE_SUFFIXES and (kind in FILE_GZIPPED or not path.name.endswith(".gz"))


def file_types() -> str:
    """The file types `is_data_file` accepts, for messages."""
    return f"{', '.join(FILE_SUFFIXES)}; {', '.join(s + '.gz' for s in FILE_GZIPPED)}"


def folder_files(folder: Path) -> list[Path]:
    """Every file under `folder` but hidden ones (.gitkeep, editors' and downloaders' partial files),
    in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def read_checked(path: Path, records: Iterator[tuple], error: type[Exception]) -> Iterator[tuple]:
    """`records`, a reader's output for `path`, with the file failing to read (a truncated or
    corrupt gzip, a broken Parquet file) raised as `error`, naming the file, its format and how far
    it was read."""
    n = 0
    try:
        for item in records:
            n = item[0]
            yield item
    except READ_ERRORS as e:
        kind = data_suffix(path)[1:].upper() + (" (gzipped)" if path.name.endswith(".gz") else "")
        where = f"after {place(path, n)}" if n else "at its start"
        raise error(f"{path}: cannot be read as {kind} ({where}): {e}") from None


def place(path: Path, n: int) -> str:
    """What a reader's number `n` is in `path`: "line 3", "row 3" of a Parquet file, "record 3" of a
    JSON array (or of JSONL under a .json name, where it is the line)."""
    return f"{_UNITS.get(data_suffix(path), 'line')} {n}"


def open_bytes(path: Path) -> BinaryIO:
    """A file's bytes, decompressed where its name ends in .gz."""
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")


def read_jsonl(path: Path) -> Iterator[tuple[int, dict | None, str | None, str]]:
    with open_bytes(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as e:
                yield n, None, f"undecodable bytes at offset {e.start}", line.decode("utf-8", "replace")
                continue
            try:
                rec = json.loads(text)
            except json.JSONDecodeError as e:
                yield n, None, f"invalid JSON: {e.msg} at column {e.colno}", text
                continue
            yield _json_record(n, rec, text, "a JSON object", decoded_strictly=True)


def _json_record(n: int, rec: object, raw: str, expected: str,
                 decoded_strictly: bool = False) -> tuple[int, dict | None, str | None, str]:
    """A reader's (n, record or None, reason or None, raw text) for a parsed JSON value `rec` whose
    text is `raw` (decoded with surrogateescape, unless `decoded_strictly`)."""
    if not decoded_strictly and _UNDECODABLE.search(raw):
        return n, None, "undecodable bytes", raw.encode("utf-8", "replace").decode("utf-8", "replace")
    if not isinstance(rec, dict):
        return n, None, f"expected {expected}, got {type(rec).__name__}", raw
    lone = jsontext.SURROGATE_ESCAPE.search(raw) and jsontext.lone_surrogate(rec)
    return (n, None, lone, raw) if lone else (n, rec, None, raw)


class _JsonText:
    """A .json file's text, decoded and read in chunks as parsing needs it. `buf` holds what is not
    yet forgotten; its first character is on line `line`, column `col` + 1 of the file."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.decode = codecs.getincrementaldecoder("utf-8")("surrogateescape").decode
        self.buf, self.eof, self.line, self.col = "", False, 1, 0

    def more(self, at_least: int = 0) -> bool:
        """Read a chunk, or `at_least` more bytes where that is more (fewer at the end); False at the end."""
        if self.eof:
            return False
        data = self.f.read(max(JSON_CHUNK, at_least))
        self.eof = not data
        self.buf += self.decode(data, final=self.eof)
        return True

    def skip_ws(self, i: int) -> int:
        """The offset of the first character at or after `i` that is not whitespace (len(buf) at the end)."""
        while True:
            i = _JSON_WS.match(self.buf, i).end()
            if i < len(self.buf) or not self.more():
                return i

    def value(self, i: int) -> tuple[object, int]:
        """The JSON value that starts at offset `i` and the offset after it, reading as far as it
        needs (a value that ends where the text read so far ends may be a number cut short)."""
        while True:
            try:
                value, end = _JSON_DECODER.raw_decode(self.buf, i)
                if end < len(self.buf) or self.eof:
                    return value, end
            except json.JSONDecodeError as e:
                # cut short by the end of what is read, or broken where more text cannot mend it
                if self.eof or (e.pos < len(self.buf) - 64 and not e.msg.startswith("Unterminated string")):
                    raise ValueError(f"{self.where(e.pos)}: {e.msg}") from None
            self.more(len(self.buf) - i)  # as much again: the retries stay linear in the value's size

    def where(self, i: int) -> str:
        """Offset `i`'s line and column in the file."""
        newline = self.buf.rfind("\n", 0, i)
        line = self.line + self.buf.count("\n", 0, i)
        return f"line {line} column {i - newline if newline >= 0 else self.col + i + 1}"

    def forget_before(self, i: int) -> int:
        """Drop the text before offset `i` once it is a chunk long (memory stays bounded, even for an
        array on one line); `i`'s new offset."""
        if i < JSON_CHUNK:
            return i
        newline = self.buf.rfind("\n", 0, i)
        self.col = i - newline - 1 if newline >= 0 else self.col + i
        self.line += self.buf.count("\n", 0, i)
        self.buf = self.buf[i:]
        return 0


def read_json(path: Path) -> Iterator[tuple[int, dict | None, str | None, str]]:
    """A .json file: an array of records, each numbered by its place in the array (as a Parquet
    file's rows are: a compact array is all one line), one JSON object, or JSONL under a .json name
    (read as JSONL). Read in chunks, in bounded memory whatever the file's size. An array broken
    part-way fails the file: its records could not be counted."""
    with open_bytes(path) as f:
        text = _JsonText(f)
        i = text.skip_ws(0)
        if not text.buf.startswith("[", i):
            try:
                rec, end = text.value(i)
                whole = text.skip_ws(end) == len(text.buf)
            except ValueError:
                whole = False
            if whole:
                yield _json_record(1, rec, text.buf[i:end], "a JSON object or array")
                return
        else:
            n = 0
            i = text.skip_ws(i + 1)
            if text.buf.startswith("]", i):
                i += 1
            else:
                while True:
                    rec, end = text.value(i)
                    n += 1
                    yield _json_record(n, rec, text.buf[i:end], "a JSON object")
                    i = text.skip_ws(end)
                    if text.buf.startswith("]", i):
                        i += 1
                        break
                    if not text.buf.startswith(",", i):
                        raise ValueError(f"{text.where(i)}: expected ',' or ']' after record {n}")
                    i = text.forget_before(text.skip_ws(i + 1))
            if text.skip_ws(i) < len(text.buf):
                raise ValueError(f"{text.where(text.skip_ws(i))}: data after the end of the array")
            return
    yield from read_jsonl(path)  # JSONL under a .json name, or one bad object: line by line


def read_csv(path: Path) -> Iterator[tuple[int, dict | None, str | None, str]]:
    with open_bytes(path) as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.DictReader(text, restkey=_EXTRA)
        for rec in reader:
            n = reader.line_num
            shown = ",".join(str(v) for v in rec.values())
            if _EXTRA in rec:
                extra = len(rec.pop(_EXTRA))
                yield n, None, f"{len(rec) + extra} fields, header has {len(rec)}", shown
                continue
            if any(isinstance(v, str) and _UNDECODABLE.search(v) for v in rec.values()):
                yield n, None, "undecodable bytes", shown.encode("utf-8", "replace").decode("utf-8", "replace")
                continue
            # an empty CSV cell is a missing value
            yield n, {k: (v if v != "" else None) for k, v in rec.items()}, None, shown


def read_parquet(path: Path, chunk_rows: int) -> Iterator[tuple[int, dict | None, str | None, str]]:
    n = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows):
        for rec in batch.to_pylist():
            n += 1
            yield n, rec, None, json.dumps(rec, default=str)


def read_raw(path: Path, chunk_rows: int) -> Iterator[tuple[int, dict | None, str | None, str]]:
    if data_suffix(path) == ".jsonl":
        return read_jsonl(path)
    if data_suffix(path) == ".json":
        return read_json(path)
    if data_suffix(path) == ".csv":
        return read_csv(path)
    return read_parquet(path, chunk_rows)


def raw_files(folders: list[Path]) -> tuple[list[Path], list[Path]]:
    """The raw prompt files under `folders`, in a stable order, and the other files there (which
    ingest skips and names in its summary)."""
    found = [p for folder in folders if folder.exists() for p in folder_files(folder)]
    return ([p for p in found if is_data_file(p)],
            [p for p in found if not is_data_file(p)])


# -- one record to the native shape ---------------------------------------------------------------

def renamed(rec: dict, field_map: dict[str, str]) -> dict:
    """`rec` with its top-level fields renamed by `field_map` (ingest.field_map, import_field_map)."""
    return {field_map.get(k, k): v for k, v in rec.items()} if field_map else rec


def to_native(rec: dict, file_id: str, line: int, cfg: IngestConfig) -> tuple[dict | None, str | None]:
    """A native row (COLUMNS, prompt not yet normalised) from a native, instruction/input/output,
    Human/Assistant transcript or message-list record (its first user message); or None and the
    reason it is quarantined."""
    rec = renamed(rec, cfg.field_map)
    if cfg.user_id_field and rec.get("user_id") is None:
        rec["user_id"] = rec.get(cfg.user_id_field)
    derived_id = False
    # message lists: TRL's conversational prompt-only and preference records, OpenAI and ShareGPT chats
    listed = next((k for k in ("prompt", "messages", "conversations", "chosen") if messages.is_list(rec.get(k))
                   and (k == "prompt" or rec.get("prompt") is None)), None)
    if listed:
        turns, reason = messages.read(rec[listed], listed)
        first = next((m for m in turns or [] if m.role == "user"), None)
        if first is None:
            return None, reason or f"field '{listed}': no user message"
        if not isinstance(first.content, str) or not first.content.strip():
            problem = "empty" if isinstance(first.content, str) else f"wrong type {type(first.content).__name__}"
            return None, f"field '{listed}[{first.index}].{first.key}': {problem}"
        rec["prompt"] = first.content
        derived_id = True
    elif rec.get("prompt") is None:
        if isinstance(rec.get("instruction"), str):
            extra = rec.get("input")
            rec["prompt"] = rec["instruction"] + (f"\n\n{extra}" if isinstance(extra, str) and extra.strip() else "")
            derived_id = True
        else:
            for key in ("text", "chosen", "conversation"):
                if isinstance(rec.get(key), str) and "Human:" in rec[key]:
                    m = _TRANSCRIPT.search(rec[key])
                    rec["prompt"] = m.group(1) if m else None
                    derived_id = True
                    break
    if isinstance(rec.get("prompt"), str) and "Human:" in rec["prompt"]:
        m = _TRANSCRIPT.search(rec["prompt"])
        if m:
            rec["prompt"] = m.group(1)
    if derived_id and rec.get("prompt_id") is None:
        rec["prompt_id"] = f"{file_id}:{line}"  # imported shapes rarely carry an id
    for key in REQUIRED:
        value = rec.get(key)
        if value is None:
            return None, f"field '{key}': missing"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return None, f"field '{key}': wrong type {type(value).__name__}"
        if isinstance(value, str) and not value.strip():
            return None, f"field '{key}': empty"
    if not isinstance(rec["prompt"], str):
        return None, f"field 'prompt': wrong type {type(rec['prompt']).__name__}"
    for key in OPTIONAL:
        if rec.get(key) is not None and not isinstance(rec[key], str):
            return None, f"field '{key}': wrong type {type(rec[key]).__name__}"
    if rec.get("source") is not None and rec["source"] not in SOURCES:
        return None, f"field 'source': {rec['source']!r} is not one of {', '.join(SOURCES)}"
    return {k: (str(rec[k]) if rec.get(k) is not None else None) for k in COLUMNS}, None


def normalize(text: str) -> str:
    """Unicode NFC and collapsed whitespace."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def split_of(key: str, salt: str, val_fraction: float, test_fraction: float) -> str:
    """The split of a user: a salted hash, so it never changes as new data arrives."""
    u = unit_hash(key, salt)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


# -- the three passes -----------------------------------------------------------------------------

class _Keys:
    """What pass 2 needs of each kept-candidate row, in compact arrays."""

    def __init__(self) -> None:
        self.user: list[str] = []
        self.split_key: list[str] = []
        self.created: list[str | None] = []
        self.exact = array("q")
        self.prefix = array("q")
        self.pii = {t: array("H") for t in pii.PII_TYPES}


def _write_chunk(rows: dict[str, list], folder: Path, index: int) -> Path:
    path = folder / f"chunk-{index:05d}.parquet"
    pq.write_table(pa.table(rows, schema=SCHEMA), path)
    for col in rows.values():
        col.clear()
    return path


def ingest(files: list[Path], cfg: IngestConfig, out_dir: Path, quarantine_dir: Path) -> IngestResult:
    """Ingest `files` into out_dir/{train,val,test}.parquet and quarantine_dir/rows.parquet."""
    counts = Counts()
    keys = _Keys()
    seen_ids: set[str] = set()
    out_dir.mkdir(parents=True, exist_ok=True)
    quarantine_dir.mkdir(parents=True, exist_ok=True)
    bad: dict[str, list] = {c: [] for c in QUARANTINE_SCHEMA.names}
    reasons: dict[str, int] = {}

    def quarantine(path: Path, line: int, reason: str, raw: str) -> None:
        counts.quarantined += 1
        reasons[reason.split(":")[0]] = reasons.get(reason.split(":")[0], 0) + 1
        bad["file"].append(str(path))
        bad["line"].append(line)
        bad["reason"].append(reason)
        bad["raw"].append(pii.scrub(raw[:20_000])[0])  # kept to fix and resubmit, never with PII

    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".ingest-") as tmp:
        chunks: list[Path] = []
        rows: dict[str, list] = {c: [] for c in COLUMNS}
        # 1. stream: validate, normalise, scrub; keep small keys only
        for path in files:
            with_user = probed = 0
            for line, rec, reason, raw in read_checked(path, read_raw(path, cfg.chunk_rows), IngestError):
                counts.read += 1
                if rec is not None and probed < USER_FIELD_PROBE:
                    probed += 1
                    with_user += _has_user(rec, cfg)
                    if probed == USER_FIELD_PROBE and not with_user:
                        _no_user_ids(path)
                row = None
                if rec is not None:
                    row, reason = to_native(rec, uncompressed_name(path).stem, line, cfg)
                if row is not None:
                    prompt = normalize(row["prompt"])
                    if not prompt:
                        row, reason = None, "field 'prompt': empty after normalisation"
                    elif len(prompt) > cfg.max_chars:
                        row, reason = None, f"field 'prompt': {len(prompt)} characters, over ingest.max_chars={cfg.max_chars}"
                    elif row["prompt_id"] in seen_ids:
                        row, reason = None, f"field 'prompt_id': duplicate id {row['prompt_id']!r}"
                if row is None:
                    quarantine(path, line, reason, raw)
                    continue
                seen_ids.add(row["prompt_id"])
                scrubbed, spans = pii.scrub(prompt)
                row["prompt"] = scrubbed
                for c in COLUMNS:
                    rows[c].append(row[c])
                keys.user.append(row["user_id"])
                keys.split_key.append(row[cfg.split_by] or "")
                keys.created.append(row["created_at"])
                keys.exact.append(hash(scrubbed))
                keys.prefix.append(hash(scrubbed[:cfg.dedup_prefix_chars])
                                   if cfg.dedup_prefix_chars and len(scrubbed) > cfg.dedup_prefix_chars else 0)
                found = {t: 0 for t in pii.PII_TYPES}
                for s in spans:
                    found[s.type] += 1
                for t, n in found.items():
                    keys.pii[t].append(n)
                if len(rows["prompt"]) >= cfg.chunk_rows:
                    chunks.append(_write_chunk(rows, Path(tmp), len(chunks)))
            if probed and probed < USER_FIELD_PROBE and not with_user:
                _no_user_ids(path)
        if rows["prompt"]:
            chunks.append(_write_chunk(rows, Path(tmp), len(chunks)))
        pq.write_table(pa.table(bad, schema=QUARANTINE_SCHEMA), quarantine_dir / "rows.parquet")

        # 2. decide on the keys: dedup, cap, split
        split_of_row = _decide(keys, cfg, counts)

        # 3. stream the chunks into the split files
        writers = {s: pq.ParquetWriter(out_dir / f"{s}.parquet", SCHEMA) for s in SPLITS}
        users: dict[str, set] = {s: set() for s in SPLITS}
        pii_counts = {s: {t: 0 for t in pii.PII_TYPES} for s in SPLITS}
        start = 0
        for chunk in chunks:
            table = pq.read_table(chunk)
            labels = split_of_row[start:start + len(table)]
            for i, s in enumerate(SPLITS):
                mask = labels == i
                part = table.filter(pa.array(mask))
                writers[s].write_table(part)
                users[s].update(part.column("user_id").to_pylist())
                for t in pii.PII_TYPES:
                    pii_counts[s][t] += int(pd.Series(keys.pii[t][start:start + len(table)])[mask].sum())
            start += len(table)
        for w in writers.values():
            w.close()
    counts.kept = {s: counts.kept.get(s, 0) for s in SPLITS}
    counts.check()
    return IngestResult(counts, {s: len(u) for s, u in users.items()}, pii_counts, reasons,
                        [str(f) for f in files])


def _has_user(rec: dict, cfg: IngestConfig) -> bool:
    if rec.get("user_id") is not None or (cfg.user_id_field and rec.get(cfg.user_id_field) is not None):
        return True
    return any(rec.get(src) is not None for src, dst in cfg.field_map.items() if dst == "user_id")


def _no_user_ids(path: Path) -> None:
    raise IngestError(f"{path}: no record has a 'user_id' field, so prompts cannot be split by user; "
                      "map one with ingest.field_map (e.g. {uid: user_id}) or name a substitute in "
                      "ingest.user_id_field (e.g. a session or conversation id)")


def _decide(keys: _Keys, cfg: IngestConfig, counts: Counts):
    """Per row: 0/1/2 for train/val/test, -1 removed (duplicate or over the cap)."""
    import numpy as np

    n = len(keys.user)
    df = pd.DataFrame({"user": keys.user, "created": keys.created,
                       "exact": np.frombuffer(keys.exact, dtype=np.int64) if n else np.zeros(0, np.int64),
                       "prefix": np.frombuffer(keys.prefix, dtype=np.int64) if n else np.zeros(0, np.int64)})
    # earliest first, so dedup and the cap keep a user's first prompts
    df = df.sort_values("created", na_position="last", kind="stable")
    df = df[~df.exact.duplicated()]
    df = df[~((df.prefix != 0) & df.prefix.duplicated())]  # 0: shorter than the prefix
    counts.duplicates = n - len(df)
    over = df.groupby("user", sort=False).cumcount() >= cfg.max_prompts_per_user
    counts.capped = int(over.sum())
    df = df[~over]
    label = np.full(n, -1, dtype=np.int8)
    split_keys = pd.Series(keys.split_key, dtype=object)[df.index]
    index = {s: i for i, s in enumerate(SPLITS)}
    of_key = {k: index[split_of(k, cfg.salt, cfg.val_fraction, cfg.test_fraction)] for k in split_keys.unique()}
    label[df.index.to_numpy()] = split_keys.map(of_key).to_numpy(dtype=np.int8)
    counts.kept = {s: int((label == i).sum()) for i, s in enumerate(SPLITS)}
    return label


def read_splits(out_dir: Path) -> dict[str, pd.DataFrame]:
    return {s: pd.read_parquet(out_dir / f"{s}.parquet") for s in SPLITS}


def run(raw_dirs: list[Path], out_dir: Path, quarantine_dir: Path, reports_dir: Path,
        cfg: IngestConfig) -> dict[str, float]:
    """The whole ingest stage: ingest, the quarantine gate, the data checks, the reports.
    Returns the stage's metrics; raises IngestError when the stage must fail."""
    from rlhf import expectations

    files, skipped = raw_files(raw_dirs)
    if not files:
        raise IngestError(f"no raw prompt files ({file_types()}) under "
                          f"{', '.join(map(str, raw_dirs))}"
                          + (f"; skipped: {', '.join(map(str, skipped))}" if skipped else ""))
    if skipped:
        print(f"ingest: skipped {len(skipped)} file(s) that are not raw prompt files "
              f"({file_types()}): {', '.join(map(str, skipped))}", file=sys.stderr)
    result = ingest(files, cfg, out_dir, quarantine_dir)
    n = result.counts
    frac = n.quarantined / max(1, n.read)
    reports_dir.mkdir(parents=True, exist_ok=True)
    summary = {"files": result.files, "files_skipped": [str(f) for f in skipped],
               "rows_read": n.read, "quarantined": n.quarantined,
               "duplicates_removed": n.duplicates, "capped_removed": n.capped, "rows": n.kept,
               "users": result.users, "quarantine_reasons": result.reasons}
    (reports_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (reports_dir / "pii.json").write_text(json.dumps(
        {"scrubbed_spans_per_split": result.pii,
         "scrubbed_spans_total": {t: sum(result.pii[s][t] for s in SPLITS) for t in pii.PII_TYPES}},
        indent=2) + "\n")
    if frac > cfg.max_quarantine_fraction:
        top = dict(sorted(result.reasons.items(), key=lambda kv: -kv[1])[:5])
        raise IngestError(f"{n.quarantined} of {n.read} rows ({frac:.1%}) quarantined, over "
                          f"ingest.max_quarantine_fraction={cfg.max_quarantine_fraction}; see "
                          f"{quarantine_dir / 'rows.parquet'}; top reasons: {top}")
    check = expectations.check_splits(
        read_splits(out_dir), max_chars=cfg.max_chars,
        expected_fractions={"train": 1 - cfg.val_fraction - cfg.test_fraction, "val": cfg.val_fraction,
                            "test": cfg.test_fraction},
        fraction_tolerance=cfg.split_tolerance, pii_free=lambda t: not pii.has_pii(t),
        docs_dir=reports_dir / "data_docs", fraction_of=cfg.split_by)
    if not check.success:
        raise IngestError("data checks failed (Data Docs in " + str(reports_dir / "data_docs") + "):\n  "
                          + "\n  ".join(check.failures))
    return {"ingest/files_read": len(files), "ingest/files_skipped": len(skipped),
            "ingest/rows_read": n.read, "ingest/quarantined": n.quarantined,
            "ingest/duplicates_removed": n.duplicates, "ingest/capped_removed": n.capped,
            **{f"ingest/rows_{s}": k for s, k in n.kept.items()},
            **{f"ingest/users_{s}": k for s, k in result.users.items()},
            "ingest/quarantine_fraction": frac,
            **{f"ingest/pii/{t.lower()}": sum(result.pii[s][t] for s in SPLITS) for t in pii.PII_TYPES}}
