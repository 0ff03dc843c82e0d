"""Imported label files, shared by demonstrations and comparisons: finding the files, reading their
records, cleaning text, the quarantine and its gate, the val split of imports.

`import_path` is one file or a folder of files (JSONL, JSON arrays, CSV, Parquet, in any mix; the
first three also gzipped, `name.jsonl.gz`), read by ingest's readers.
Every record becomes rows or a quarantine entry with its file, line (the element's number in a
JSON array, the row in Parquet) and reason, never its text. Text is normalised and PII-scrubbed
exactly as ingest does prompts.

Message trees (OpenAssistant's shape) come one tree per record, the first human message in
`prompt` with its `replies` nested (oasst's `*.trees.jsonl`), or one message per record with
`message_id`, `parent_id`, `role`, `text` and `rank` (its `*.messages.jsonl` and the parquet files
of `OpenAssistant/oasst1`); these are put together into trees after every file is read, and a
message that cannot be placed is quarantined on its own line. `tree_turns` walks a tree.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rlhf import ingest, pii

QUARANTINE_SCHEMA = pa.schema([("file", pa.string()), ("line", pa.int64()), ("reason", pa.string())])
PARQUET_BATCH = 10_000
# the counterpart of ingest._TRANSCRIPT: the assistant turn that follows a human turn
ASSISTANT_TURN = re.compile(r"\n\nAssistant:\s*(.*?)(?=\n\nHuman:|\Z)", re.S)


class ImportFilesError(RuntimeError):
    """Imported files a stage cannot use at all (as opposed to bad records, which are quarantined)."""


# -- finding and reading files: each reader yields (line, record or None, reason or None) ---------

def import_files(path: Path, key: str, what: str) -> list[Path]:
    """The files to import: `path` itself, or every supported file under the folder `path`.
    `key` (the params key) and `what` (the kind of record) name them in errors."""
    if path.is_file():
        if not ingest.is_data_file(path):
            shown = "".join(path.suffixes[-2:]) if path.name.endswith(".gz") else path.suffix
            raise ImportFilesError(f"{path}: unsupported file type {shown!r}; "
                                   f"expected one of {ingest.file_types()}")
        return [path]
    if path.is_dir():
        files = [p for p in ingest.folder_files(path) if ingest.is_data_file(p)]
        if not files:
            raise ImportFilesError(f"{path}: no {what} files ({ingest.file_types()}) in this folder")
        return files
    raise ImportFilesError(f"{key} {str(path)!r}: no such file or folder")


def _records(raw: Iterator[tuple]) -> Iterator[tuple[int, dict | None, str | None]]:
    """ingest's readers, without their raw text (which the quarantine never keeps)."""
    for n, rec, reason, _ in raw:
        yield n, rec, reason


def read_records(path: Path) -> Iterator[tuple[int, dict | None, str | None]]:
    """Every record of one file, as (line, or row or array element, record or None, reason or None)."""
    return _records(ingest.read_raw(path, PARQUET_BATCH))


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


def _an_id(value: Any, key: str) -> tuple[str | None, str | None]:
    """The id in field `key`, PII-scrubbed; None when it is empty; or the reason it cannot be one."""
    if value is None or value == "":
        return None, None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None, f"field '{key}': wrong type {type(value).__name__}"
    return pii.scrub(str(value))[0], None


def record_id(rec: dict) -> tuple[str | None, str | None]:
    """The record's own `prompt_id` or `id`, else a message tree's first `message_id` (PII-scrubbed),
    None when it has none, or a reason."""
    for key in ("prompt_id", "id"):
        got, reason = _an_id(rec.get(key), key)
        if got or reason:
            return got, reason
    return _an_id(rec["prompt"].get("message_id"), "prompt.message_id") if is_tree(rec) else (None, None)


def field_names(rec: dict) -> str:
    """The record's first field names, PII-scrubbed, for a 'no recognisable shape' reason."""
    return pii.scrub(", ".join(map(str, list(rec)[:10])) + (", ..." if len(rec) > 10 else ""))[0] or "none"


def is_transcript(value: Any) -> bool:
    """A "\\n\\nHuman: ... \\n\\nAssistant: ..." conversation."""
    return isinstance(value, str) and ingest._TRANSCRIPT.search(value) is not None


def first_human_turn(text: str) -> str:
    return ingest._TRANSCRIPT.search(text).group(1)


def prompt_turns(turns: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A conversation before its last assistant turn as a prompt's (role, text) turns: a single
    human turn is the prompt alone (role ""). Transcripts, message lists and message trees alike."""
    if len(turns) == 1 and turns[0][0] in ("", "Human"):
        return [("", turns[0][1])]
    return turns


# -- message trees ----------------------------------------------------------------------------------

HUMAN_ROLES = ("prompter", "user", "human")  # oasst's "prompter" first
ASSISTANT_ROLES = ("assistant",)
MESSAGE_FIELDS = frozenset({"message_id", "parent_id", "role", "text"})


@dataclass
class TreeTurn:
    """A human message of a tree: the conversation up to and including it as (role, text) turns
    (roles Human and Assistant; a first message alone has role ""), its assistant replies as
    (text, rank or None, field), in the tree's order, and its PII-scrubbed message_id, if any."""

    message_id: str | None
    turns: list[tuple[str, str]]
    replies: list[tuple[str, int | None, str]]


def is_tree(rec: dict) -> bool:
    """One tree per record: the first human message in `prompt`, its replies nested."""
    return isinstance(rec.get("prompt"), dict)


def is_message_row(rec: dict) -> bool:
    """One message of a tree per record."""
    return not is_tree(rec) and MESSAGE_FIELDS <= rec.keys()


def parse_rank(value: Any, prefix: str) -> tuple[int | None, str | None]:
    """A rank (lower is better), None where there is none; an integer, or in CSV a number in a cell,
    in a pandas-written Parquet file a float. `prefix` leads the field's name in a reason."""
    if isinstance(value, str):  # "2", or "2.0" from a float column
        try:
            value = float(value) if value.strip() else None
        except ValueError:
            return None, f"field '{prefix}rank': not an integer"
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None, None
    if isinstance(value, float) and value.is_integer():
        return int(value), None
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    return None, (f"field '{prefix}rank': not an integer" if isinstance(value, float) else
                  f"field '{prefix}rank': wrong type {type(value).__name__}")


def _message_problem(node: Any, name: str, human: bool) -> str | None:
    """Why `node` cannot be a message of a tree where a human (or, `human` False, an assistant)
    message belongs, or None."""
    if not isinstance(node, dict):
        return f"field '{name}': wrong type {type(node).__name__}"
    prefix = f"{name}." if name else ""
    roles = HUMAN_ROLES if human else ASSISTANT_ROLES
    if str(node.get("role")).lower() not in roles:
        return f"field '{prefix}role': expected {' or '.join(roles)} here"
    text = node.get("text")
    if not isinstance(text, str):
        return f"field '{prefix}text': " + ("missing" if text is None else f"wrong type {type(text).__name__}")
    if not text.strip():
        return f"field '{prefix}text': empty"
    replies = node.get("replies")
    if replies is not None and not isinstance(replies, list):
        return f"field '{prefix}replies': wrong type {type(replies).__name__}"
    return parse_rank(node.get("rank"), prefix)[1]


def _deleted(message: Any) -> bool:
    """Marked deleted at its source (oasst's `deleted`; "True" in CSV)."""
    return isinstance(message, dict) and message.get("deleted") in (True, "true", "True")


def tree_turns(root: dict, name: str = "prompt") -> tuple[list[TreeTurn] | None, str | None]:
    """Every human message of the tree under `root`, depth first, or the reason the tree cannot be
    used (naming the field of the message at fault). A message is a dict with `role`, `text`,
    optional `rank` (assistant replies), `message_id` and `replies` (a list of the other role's);
    a reply marked `deleted` is left out with the replies below it."""
    out: list[TreeTurn] = []
    stack: list[tuple[Any, str, list[tuple[str, str]]]] = [(root, name, [])]
    while stack:
        node, path, before = stack.pop()
        problem = _message_problem(node, path, human=True)
        if problem:
            return None, problem
        turns = before + [("Human", node["text"])]
        replies, later = [], []
        for i, reply in enumerate(node.get("replies") or []):
            rpath = f"{path}.replies[{i}]"
            if _deleted(reply):
                continue
            problem = _message_problem(reply, rpath, human=False)
            if problem:
                return None, problem
            replies.append((reply["text"], parse_rank(reply.get("rank"), "")[0], f"{rpath}.text"))
            for j, follow in enumerate(reply.get("replies") or []):
                if not _deleted(follow):
                    later.append((follow, f"{rpath}.replies[{j}]", turns + [("Assistant", reply["text"])]))
        message_id, problem = _an_id(node.get("message_id"), f"{path}.message_id")
        if problem:
            return None, problem
        out.append(TreeTurn(message_id, prompt_turns(turns), replies))
        stack.extend(reversed(later))
    return out, None


def message_trees(messages: list[tuple[Path, int, dict]]
                  ) -> tuple[list[tuple[Path, int, dict, list[tuple[Path, int]]]], list[tuple[Path, int, str]]]:
    """Message rows (file, line, record) put together into trees: (file, line, a one-tree record, the
    (file, line) of each of its messages) per first message, and (file, line, reason) for each row
    that has no place in one (its own fault, or its parent's)."""
    bad: list[tuple[Path, int, str]] = []  # in the order found; `placed` and these cover every row
    by_id: dict[str, tuple[Path, int, dict]] = {}
    for f, line, rec in messages:
        mid = rec.get("message_id")
        shown, reason = _an_id(mid, "message_id")
        if shown is None:
            bad.append((f, line, reason or "field 'message_id': missing"))
        elif str(mid) in by_id:
            bad.append((f, line, f"field 'message_id': duplicate id {shown!r}"))
        elif _deleted(rec):
            bad.append((f, line, "field 'deleted': true (removed at its source)"))
        else:
            by_id[str(mid)] = (f, line, {**rec, "replies": []})
    roots, children = [], {}
    for mid, (f, line, node) in by_id.items():
        parent = node.get("parent_id")
        if parent is None or parent == "" or (isinstance(parent, float) and math.isnan(parent)):
            roots.append(mid)
        else:
            children.setdefault(str(parent), []).append(mid)
    placed: set[str] = set()
    trees = []
    for root in roots:
        f, line, node = by_id[root]
        problem = _message_problem(node, "", human=True)
        placed.add(root)
        if problem:
            bad.append((f, line, problem))
            continue
        members, queue = [(f, line)], [(root, True)]
        while queue:
            mid, human = queue.pop()
            for child in children.get(mid, []):
                cf, cline, cnode = by_id[child]
                problem = _message_problem(cnode, "", human=not human)
                if problem:
                    bad.append((cf, cline, problem))
                    placed.add(child)  # quarantined for its own fault; its replies have no place
                    continue
                by_id[mid][2]["replies"].append(cnode)
                members.append((cf, cline))
                placed.add(child)
                queue.append((child, not human))
        trees.append((f, line, {"prompt": node}, members))
    for mid, (f, line, node) in by_id.items():
        if mid not in placed:
            parent = pii.scrub(str(node.get("parent_id")))[0]
            bad.append((f, line, f"field 'parent_id': no usable message {parent!r} among the imported records"))
    return trees, bad


# -- all records of all files -----------------------------------------------------------------------

@dataclass
class Imported:
    rows: pd.DataFrame                      # the caller's columns
    quarantine: pd.DataFrame                # file, line, reason
    files: list[str] = field(default_factory=list)
    read: int = 0                           # records read (a message tree gives several rows, or none)

    @property
    def quarantine_fraction(self) -> float:
        return len(self.quarantine) / max(1, self.read)

    def top_reasons(self, n: int = 5) -> dict[str, int]:
        kinds = self.quarantine.reason.str.split(":").str[0].value_counts()
        return {k: int(v) for k, v in kinds.head(n).items()}


def _file_ids(files: list[Path], root: Path) -> dict[Path, str]:
    """The file stem (of a.jsonl.gz too: a), or the path under the import folder where two files
    share a stem."""
    stems = {f: ingest.uncompressed_name(f).stem for f in files}
    shared = [s for s in stems.values() if list(stems.values()).count(s) > 1]
    return {f: (stem if stem not in shared else
                ((f.relative_to(root).parent / stem).as_posix() if root.is_dir() else str(f.parent / stem)))
            for f, stem in stems.items()}


def read_all(path: Path, to_row: Callable[[dict, str, int], tuple[dict | list[dict] | None, str | None]],
             columns: list[str], key: str, what: str, field_map: dict[str, str] | None = None) -> Imported:
    """Every record of the file or folder `path`, its fields renamed by `field_map`, as rows
    (`to_row(record, file_id, line)`, which returns a row, a message tree's rows, or the reason
    there are none) or a quarantine entry.
    Message rows are put together into one-tree records (`message_trees`) after every file is
    read, and a tree `to_row` refuses is quarantined on each of its messages' lines. A row's
    `prompt_id` must be unique: a repeated one is quarantined."""
    files = import_files(path, key, what)
    ids = _file_ids(files, path)
    rows: list[dict] = []
    bad: dict[str, list] = {c: [] for c in QUARANTINE_SCHEMA.names}
    seen: set[str] = set()
    messages: list[tuple[Path, int, dict]] = []
    read = 0

    def quarantine(f: Path, line: int, reason: str) -> None:
        bad["file"].append(str(f))
        bad["line"].append(line)
        bad["reason"].append(reason)

    def keep(f: Path, line: int, got: dict | list[dict] | None, reason: str | None,
             members: list[tuple[Path, int]]) -> None:
        if got is None:
            for mf, mline in members:
                quarantine(mf, mline, reason)
            return
        for row in [got] if isinstance(got, dict) else got:
            if row["prompt_id"] in seen:
                quarantine(f, line, f"field 'prompt_id': duplicate id {row['prompt_id']!r}")
                continue
            seen.add(row["prompt_id"])
            rows.append(row)

    for f in files:
        for line, rec, reason in ingest.read_checked(f, read_records(f), ImportFilesError):
            read += 1
            rec = ingest.renamed(rec, field_map) if rec is not None else None
            if rec is not None and is_message_row(rec):
                messages.append((f, line, rec))
                continue
            keep(f, line, *(to_row(rec, ids[f], line) if rec is not None else (None, reason)), [(f, line)])
    trees, misplaced = message_trees(messages)
    for f, line, reason in misplaced:
        quarantine(f, line, reason)
    for f, line, tree, members in trees:
        keep(f, line, *to_row(tree, ids[f], line), members)
    table = pa.table(bad, schema=QUARANTINE_SCHEMA).to_pandas().sort_values(["file", "line"], kind="stable")
    return Imported(pd.DataFrame(rows, columns=columns), table.reset_index(drop=True), [str(f) for f in files], read)


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
