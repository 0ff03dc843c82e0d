"""Ingest: every quarantine reason, formats and shapes, dedup, the cap, split stability,
conservation, scrubbing, bounded chunks."""

import dataclasses
import json
from pathlib import Path

import pandas as pd
import pytest

from rlhf import config, ingest


def cfg(**changes):
    base = config.load("ingest", "params.yaml")
    return dataclasses.replace(base, **changes)


def rec(i, user="u1", prompt=None, t=None, **extra):
    r = {"prompt_id": f"p{i}", "user_id": user, "org_id": "o1",
         "created_at": t or f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}+00:00", "source": "customer",
         "prompt": prompt if prompt is not None else f"What is {i} plus {i + 1}?"}
    r.update(extra)
    return r


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def run(tmp_path, files, **changes):
    out, q = tmp_path / "out", tmp_path / "quarantine"
    result = ingest.ingest(files, cfg(**changes), out, q)
    return result, ingest.read_splits(out), pd.read_parquet(q / "rows.parquet")


def all_rows(splits):
    return pd.concat(splits.values(), ignore_index=True)


def test_each_quarantine_reason_with_file_and_line(tmp_path):
    rows = [rec(1), "{not json", rec(2, prompt=""), rec(3, user=[1, 2]),
            {k: v for k, v in rec(4).items() if k != "user_id"},
            {k: v for k, v in rec(5).items() if k != "prompt"}, rec(6, prompt="x" * 3000),
            rec(1, prompt="another prompt with a reused id"), rec(7, source="api"), "[1, 2]", rec(8)]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    with path.open("ab") as f:
        f.write(b'{"prompt_id": "p9", "user_id": "u1", "prompt": "caf\xe9 bad bytes"}\n')
    result, splits, q = run(tmp_path, [path])
    got = dict(zip(q.line, q.reason))
    assert got[2].startswith("invalid JSON")
    assert got[3] == "field 'prompt': empty"
    assert got[4] == "field 'user_id': wrong type list"
    assert got[5] == "field 'user_id': missing"
    assert got[6] == "field 'prompt': missing"
    assert got[7].startswith("field 'prompt': 3000 characters, over ingest.max_chars")
    assert got[8] == "field 'prompt_id': duplicate id 'p1'"
    assert got[9].startswith("field 'source': 'api' is not one of")
    assert got[10] == "expected a JSON object, got list"
    assert got[12].startswith("undecodable bytes")
    assert set(q.file) == {str(path)}
    assert sorted(all_rows(splits).prompt_id) == ["p1", "p8"]
    n = result.counts
    assert (n.read, n.quarantined) == (12, 10)
    assert n.read == sum(n.kept.values()) + n.quarantined + n.duplicates + n.capped


def test_quarantined_raw_row_is_kept_without_personal_data(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [rec(1), rec(2, user=None, prompt="mail me at jo.doe@example.com")])
    _, _, q = run(tmp_path, [path])
    assert "jo.doe@example.com" not in q.raw[0] and "<EMAIL>" in q.raw[0]


def test_normalises_and_scrubs(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [rec(1, prompt="  Cafe\u0301   is \n open. Mail jo.doe@example.com ")])
    result, splits, _ = run(tmp_path, [path])
    (prompt,) = all_rows(splits).prompt
    assert prompt == "Caf\u00e9 is open. Mail <EMAIL>"
    assert sum(v["EMAIL"] for v in result.pii.values()) == 1


def test_exact_and_prefix_dedup_keep_the_earliest(tmp_path):
    long = "Please write a detailed story about a fox who lives by the river and likes to " * 2
    rows = [rec(3, prompt="What is 1 plus 2?", t="2026-01-03T00:00:00+00:00"),
            rec(1, prompt="What  is 1 plus 2? ", t="2026-01-01T00:00:00+00:00"),  # same after normalising
            rec(2, prompt=long + "ending one", user="u2"), rec(4, prompt=long + "ending two", user="u3"),
            rec(5, prompt="What is 1 plus 3?")]
    result, splits, _ = run(tmp_path, [write_jsonl(tmp_path / "a.jsonl", rows)], dedup_prefix_chars=100)
    assert sorted(all_rows(splits).prompt_id) == ["p1", "p2", "p5"]
    assert result.counts.duplicates == 2
    _, splits, _ = run(tmp_path / "exact", [write_jsonl(tmp_path / "b.jsonl", rows)], dedup_prefix_chars=0)
    assert sorted(all_rows(splits).prompt_id) == ["p1", "p2", "p4", "p5"]


def test_cap_keeps_each_users_earliest(tmp_path):
    # written newest first: the cap must follow created_at, not file order
    rows = [rec(i, user="heavy", t=f"2026-01-01T00:00:{59 - i:02d}+00:00") for i in range(10)] + [rec(50, user="light")]
    result, splits, _ = run(tmp_path, [write_jsonl(tmp_path / "a.jsonl", rows)], max_prompts_per_user=3)
    kept = all_rows(splits)
    assert sorted(kept[kept.user_id == "heavy"].prompt_id) == ["p7", "p8", "p9"]
    assert result.counts.capped == 7


def test_splits_disjoint_by_user_and_stable_as_data_grows(tmp_path):
    first = [rec(i, user=f"u{i % 40}") for i in range(200)]
    _, a, _ = run(tmp_path / "1", [write_jsonl(tmp_path / "s1.jsonl", first)])
    later = [rec(i, user=f"u{i % 80}") for i in range(200, 500)]
    _, b, _ = run(tmp_path / "2", [write_jsonl(tmp_path / "s1.jsonl", first), write_jsonl(tmp_path / "s2.jsonl", later)])
    split_a = {u: s for s, df in a.items() for u in df.user_id}
    split_b = {u: s for s, df in b.items() for u in df.user_id}
    assert all(split_b[u] == s for u, s in split_a.items())
    for s1 in ingest.SPLITS:
        for s2 in ingest.SPLITS:
            if s1 < s2:
                assert not set(b[s1].user_id) & set(b[s2].user_id)
    assert all(len(df) for df in b.values())


def test_split_by_org(tmp_path):
    rows = [rec(i, user=f"u{i}", org_id=f"o{i % 5}") for i in range(100)]
    _, splits, _ = run(tmp_path, [write_jsonl(tmp_path / "a.jsonl", rows)], split_by="org_id")
    orgs = {s: set(df.org_id) for s, df in splits.items()}
    assert not (orgs["train"] & orgs["val"]) and not (orgs["train"] & orgs["test"])


def test_jsonl_csv_parquet_in_any_mix(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [rec(1), rec(2)])
    pd.DataFrame([rec(3), rec(4)]).to_parquet(tmp_path / "b.parquet")
    (tmp_path / "c.csv").write_text("prompt_id,user_id,org_id,created_at,source,prompt\n"
                                    'p5,u5,,,,"Reverse the words: red cat big"\n'
                                    "p6,u6,o1,,customer,List 3 fruits.,extra cell\n")
    files, skipped = ingest.raw_files([tmp_path])
    assert skipped == []
    result, splits, q = run(tmp_path, files)
    assert sorted(all_rows(splits).prompt_id) == ["p1", "p2", "p3", "p4", "p5"]
    assert list(q.reason) == ["7 fields, header has 6"] and list(q.line) == [3]
    row = all_rows(splits).set_index("prompt_id").loc["p5"]
    assert pd.isna(row.org_id) and pd.isna(row.source)  # empty CSV cells are missing values


def test_gzipped_shards_are_read_and_other_files_are_named(tmp_path, capsys):
    """prompts.jsonl.gz and .csv.gz are read as their inner type, with the same lines and ids; every
    other file in the folder is skipped and named, hidden ones (.gitkeep) left out."""
    import gzip

    raw = tmp_path / "incoming"
    (raw / "sub").mkdir(parents=True)
    plain = write_jsonl(tmp_path / "a.jsonl", [rec(1), {"instruction": "Say hi.", "user_id": "u2"}, "{bad"])
    (raw / "a.jsonl.gz").write_bytes(gzip.compress(plain.read_bytes()))
    csv_text = "prompt_id,user_id,prompt\np3,u3,List 3 fruits.\n"
    (raw / "sub" / "b.csv.gz").write_bytes(gzip.compress(csv_text.encode()))
    pd.DataFrame([rec(4)]).to_parquet(raw / "c.parquet")
    for name in ("notes.txt", "prompts.tsv", "d.parquet.gz", ".gitkeep"):
        (raw / name).write_text("x")
    files, skipped = ingest.raw_files([raw])
    assert [f.relative_to(raw).as_posix() for f in files] == ["a.jsonl.gz", "c.parquet", "sub/b.csv.gz"]
    assert sorted(f.name for f in skipped) == ["d.parquet.gz", "notes.txt", "prompts.tsv"]
    _, splits, q = run(tmp_path / "gz", files)
    assert sorted(all_rows(splits).prompt_id) == ["a:2", "p1", "p3", "p4"]  # a.jsonl.gz's line 2 is a:2
    assert q.file.tolist() == [str(raw / "a.jsonl.gz")] and q.line.tolist() == [3]
    _, plain_splits, _ = run(tmp_path / "plain", [plain])
    assert sorted(all_rows(plain_splits).prompt_id) == ["a:2", "p1"]

    metrics = ingest.run([raw], tmp_path / "out", tmp_path / "q", tmp_path / "reports",
                         cfg(max_quarantine_fraction=0.5, split_tolerance=1.0))
    assert metrics["ingest/files_read"] == 3 and metrics["ingest/files_skipped"] == 3
    summary = json.loads((tmp_path / "reports" / "summary.json").read_text())
    assert sorted(Path(f).name for f in summary["files_skipped"]) == ["d.parquet.gz", "notes.txt", "prompts.tsv"]
    err = capsys.readouterr().err
    assert "skipped 3 file(s) that are not raw prompt files" in err and "prompts.tsv" in err


def test_json_arrays_are_read_in_bounded_chunks(tmp_path, monkeypatch):
    """A .json array (compact on one line, or indented; gzipped too) gives the records json.load
    gives, numbered by their place in the array, whatever the chunk size: numbers, multi-byte
    characters and escapes cut by a chunk's end, and the text kept in memory stays a few chunks."""
    import gzip

    records = [rec(i, user=f"u{i % 7}", prompt=f"Ünïcödé ✓ \"{i}\" plus {i}\n?") for i in range(300)]
    records[5:7] = [12345678, ["a list"]]
    compact, indented = json.dumps(records, ensure_ascii=False), json.dumps(records, indent=2)
    for name, text in (("compact.json", compact), ("indented.json", indented)):
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "packed.json.gz").write_bytes(gzip.compress(compact.encode()))
    largest = [0]
    more = ingest._JsonText.more

    def watched(self, *args):
        got = more(self, *args)
        largest[0] = max(largest[0], len(self.buf))
        return got

    monkeypatch.setattr(ingest._JsonText, "more", watched)
    for chunk in (7, 64, 1 << 20):
        monkeypatch.setattr(ingest, "JSON_CHUNK", chunk)
        for name in ("compact.json", "indented.json", "packed.json.gz"):
            largest[0] = 0
            got = list(ingest.read_checked(tmp_path / name, ingest.read_json(tmp_path / name), ingest.IngestError))
            assert [n for n, *_ in got] == list(range(1, 301))
            assert [r for _, r, _, _ in got] == [r if isinstance(r, dict) else None for r in records]
            assert [why for _, _, why, _ in got][5:7] == ["expected a JSON object, got int",
                                                          "expected a JSON object, got list"]
            assert [json.loads(raw) for *_, raw in got] == records  # the quarantine keeps each element's own text
            if chunk == 64:
                assert largest[0] < 8 * 64  # not the file (about 50,000 characters): 420 at most
    assert len(compact) > 40_000

    monkeypatch.setattr(ingest, "JSON_CHUNK", 1 << 20)
    files, skipped = ingest.raw_files([tmp_path])
    assert sorted(f.name for f in files) == ["compact.json", "indented.json", "packed.json.gz"] and not skipped
    _, splits, q = run(tmp_path / "run", [tmp_path / "compact.json"])
    assert len(all_rows(splits)) == 298 and q.line.tolist() == [6, 7]


def test_json_files_that_are_not_arrays(tmp_path):
    """One object is one record; JSONL under a .json name is read line by line; undecodable bytes
    in an array element quarantine that element alone."""
    one = tmp_path / "one.json"
    one.write_text(json.dumps(rec(1), indent=2))
    lines = write_jsonl(tmp_path / "lines.json", [rec(2), "{bad", rec(3)])
    bad_bytes = tmp_path / "bytes.json"
    bad_bytes.write_bytes(b'[{"prompt_id": "p4", "user_id": "u", "prompt": "ok"},\n'
                          b' {"prompt_id": "p5", "user_id": "u", "prompt": "caf\xe9"}]')
    _, splits, q = run(tmp_path, [one, lines, bad_bytes])
    assert sorted(all_rows(splits).prompt_id) == ["p1", "p2", "p3", "p4"]
    assert q[["file", "line", "reason"]].values.tolist() == [
        [str(lines), 2, "invalid JSON: Expecting property name enclosed in double quotes at column 2"],
        [str(bad_bytes), 2, "undecodable bytes"]]


def test_a_lone_surrogate_is_quarantined_naming_its_field(tmp_path):
    """JSON text may escape half a UTF-16 pair (JavaScript writes a string cut inside an emoji so).
    No Parquet file can hold one, so its record is quarantined with the field that holds it, in
    JSONL and JSON arrays, for ingest and label imports alike; a whole pair is its character."""
    from rlhf import comparisons, demonstrations

    records = [r'{"prompt_id": "p1", "user_id": "u", "prompt": "Cut \ud83d here"}',
               r'{"prompt_id": "p2", "user_id": "u", "prompt": "Whole \ud83d\ude00 pair"}',
               r'{"prompt_id": "p3", "user_id": "u", "messages": [{"role": "user", "content": "x\uDC80"}]}',
               r'{"prompt_id": "p4", "user_id": "u", "prompt": "ok", "meta": {"\ud800k": 1}}']
    reasons = ["field 'prompt': lone UTF-16 surrogate \\ud83d at character 4",
               "field 'messages[0].content': lone UTF-16 surrogate \\udc80 at character 1",
               "field 'meta.\\ud800k': lone UTF-16 surrogate in the field's name"]
    lines = tmp_path / "lines.jsonl"
    lines.write_text("\n".join(records) + "\n")
    array = tmp_path / "array.json"
    array.write_text("[" + ",\n".join(records) + "]")
    for path in (lines, array):
        _, splits, q = run(tmp_path / path.stem, [path], max_quarantine_fraction=0.9)
        assert all_rows(splits).prompt.tolist() == ["Whole \U0001F600 pair"]
        assert q[["line", "reason"]].values.tolist() == [[1, reasons[0]], [3, reasons[1]], [4, reasons[2]]]
        assert "\\ud83d" in q.raw[0]  # the raw text keeps the escape
    demos = tmp_path / "demos.jsonl"
    demos.write_text(r'{"prompt": "Say \ud83d", "response": "hi"}' + "\n" + '{"prompt": "Say hi", "response": "hi"}\n')
    result = demonstrations.from_files(demos)
    assert result.rows.prompt.tolist() == ["Say hi"]
    assert result.quarantine.reason.tolist() == ["field 'prompt': lone UTF-16 surrogate \\ud83d at character 4"]
    result.rows.to_parquet(tmp_path / "demos.parquet")
    # JSON in a CSV cell: a message list (demonstrations) and a list of responses (rankings)
    cells = tmp_path / "cells.csv"
    pd.DataFrame([{"messages": r'[{"role": "user", "content": "Hi \ud83d"}, {"role": "assistant", "content": "yo"}]'},
                  {"messages": r'[{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "yo"}]'}]
                 ).to_csv(cells, index=False)
    result = demonstrations.from_files(cells)
    assert result.rows.prompt.tolist() == ["Hi"]
    assert result.quarantine.reason.tolist() == ["field 'messages[0].content': lone UTF-16 surrogate \\ud83d at "
                                                 "character 3"]
    ranked = tmp_path / "ranked.csv"
    pd.DataFrame([{"prompt": "Name a fruit", "responses": r'["pear \udc00", "apple"]', "ranks": "[2, 1]"},
                  {"prompt": "Name a fruit", "responses": r'["pear", "apple"]', "ranks": "[2, 1]"}]
                 ).to_csv(ranked, index=False)
    result = comparisons.from_files(ranked)
    assert len(result.rows) == 1
    assert result.quarantine.reason.tolist() == ["field 'responses[0]': lone UTF-16 surrogate \\udc00 at character 5"]


@pytest.mark.parametrize("text, where", [
    ('[{"prompt": "a"},\n {"prompt": ', r"after record 1\): line 2 column 13: Expecting value"),
    ('[{"prompt": "a"} {"prompt": "b"}]', r"after record 1\): line 1 column 18: expected ',' or ']' after record 1"),
    ('[{"prompt": "a"}]\n[]', r"after record 1\): line 2 column 1: data after the end of the array"),
    ('[{"prompt": "a"},\n {"prompt": "b}]', r"after record 1\): line 2 column 13: Unterminated string"),
])
def test_a_broken_json_array_fails_naming_the_place(tmp_path, monkeypatch, text, where):
    """An array broken part-way fails the file (its records cannot be counted), naming the file, the
    last record read and the line and column, at any chunk size."""
    from rlhf import label_files

    path = tmp_path / "broken.json"
    path.write_text(text)
    for chunk in (3, 1 << 20):
        monkeypatch.setattr(ingest, "JSON_CHUNK", chunk)
        with pytest.raises(ingest.IngestError, match=r"broken\.json: cannot be read as JSON \(" + where):
            run(tmp_path, [path])
        with pytest.raises(label_files.ImportFilesError, match=r"broken\.json: cannot be read as JSON \(" + where):
            label_files.read_all(path, lambda r, f, n: (None, "unused"), [], "k", "test")


def test_a_file_that_cannot_be_read_fails_naming_it(tmp_path):
    """A truncated gzip or a broken Parquet file stops the stage with the file, its format and how
    far it was read, not a traceback; label imports say the same."""
    import gzip

    from rlhf import label_files

    data = write_jsonl(tmp_path / "full.jsonl", [rec(i, user=f"u{i}") for i in range(2000)]).read_bytes()
    packed = gzip.compress(data)
    (tmp_path / "cut.jsonl.gz").write_bytes(packed[:len(packed) // 2])
    with pytest.raises(ingest.IngestError, match=r"cut\.jsonl\.gz: cannot be read as JSONL \(gzipped\) "
                                                 r"\(after line \d+\): Compressed file ended"):
        run(tmp_path, [tmp_path / "cut.jsonl.gz"])
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ingest.IngestError, match=r"broken\.parquet: cannot be read as PARQUET \(at its start\)"):
        run(tmp_path, [tmp_path / "broken.parquet"])
    with pytest.raises(label_files.ImportFilesError, match=r"cut\.jsonl\.gz: cannot be read as JSONL \(gzipped\) "
                                                           r"\(after line \d+\)"):
        label_files.read_all(tmp_path / "cut.jsonl.gz", lambda r, f, n: (None, "unused"), [], "k", "test")


def test_public_shapes(tmp_path):
    rows = [{"instruction": "Summarize this.", "input": "The fox is red.", "output": "A red fox.", "user": "a"},
            {"text": "\n\nHuman: What is 2 plus 2?\n\nAssistant: 4\n\nHuman: thanks\n\nAssistant: ok", "user": "b"},
            {"prompt_id": "n1", "uid": "c", "question": "List 3 fruits."}]
    path = write_jsonl(tmp_path / "pub.jsonl", rows)
    _, splits, q = run(tmp_path, [path], user_id_field="user", field_map={"uid": "user_id", "question": "prompt"})
    got = all_rows(splits).set_index("prompt_id").prompt.to_dict()
    assert got == {"pub:1": "Summarize this. The fox is red.", "pub:2": "What is 2 plus 2?", "n1": "List 3 fruits."}
    assert q.empty


def test_message_lists_give_their_first_user_message(tmp_path):
    """TRL's conversational prompt-only and preference records, OpenAI `messages` and ShareGPT
    `conversations`: the prompt is the first user message; a list with none, or a user message
    that is not text, is quarantined naming it."""
    sys_msg = {"role": "system", "content": "Be brief."}
    rows = [{"prompt": [sys_msg, {"role": "user", "content": "Name a fruit for ann@example.org"}], "user": "a"},
            {"messages": [{"role": "user", "content": "Reverse: a b"}, {"role": "assistant", "content": "b a"}],
             "user": "b"},
            {"conversations": [{"from": "human", "value": [{"type": "text", "text": "List 3 birds."}]}], "user": "c"},
            {"prompt_id": "uf1", "prompt": "Say hi", "chosen": [{"role": "user", "content": "not read"}], "user": "d"},
            {"chosen": [{"role": "user", "content": "What is 2 plus 2?"}, {"role": "assistant", "content": "4"}],
             "user": "e"},
            {"prompt": [sys_msg], "user": "f"},
            {"messages": [{"role": "user", "content": 7}], "user": "g"},
            {"messages": [{"role": "user", "content": "  "}], "user": "h"}]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    _, splits, q = run(tmp_path, [path], user_id_field="user")
    got = all_rows(splits).set_index("prompt_id").prompt.to_dict()
    assert got == {"chat:1": "Name a fruit for <EMAIL>", "chat:2": "Reverse: a b", "chat:3": "List 3 birds.",
                   "uf1": "Say hi", "chat:5": "What is 2 plus 2?"}
    assert dict(zip(q.line, q.reason)) == {6: "field 'prompt': no user message",
                                           7: "field 'messages[0].content': wrong type int",
                                           8: "field 'messages[0].content': empty"}
    csv_path = tmp_path / "chat.csv"
    pd.DataFrame([{"prompt": json.dumps([{"role": "user", "content": "Name a tree"}]), "user_id": "u"}]).to_csv(
        csv_path, index=False)
    _, splits, _ = run(tmp_path / "csv", [csv_path])
    assert all_rows(splits).prompt.tolist() == ["Name a tree"]


def test_file_without_user_ids_is_a_clear_error(tmp_path):
    path = write_jsonl(tmp_path / "alpaca.jsonl", [{"instruction": f"Do {i}.", "output": "ok"} for i in range(5)])
    with pytest.raises(ingest.IngestError, match=r"alpaca\.jsonl: no record has a 'user_id' field.*user_id_field"):
        run(tmp_path, [path])


def test_small_chunks_give_the_same_result(tmp_path):
    rows = [rec(i, user=f"u{i % 13}", prompt=f"What is {i % 37} plus 1?") for i in range(300)]
    path = write_jsonl(tmp_path / "a.jsonl", rows)
    r1, s1, _ = run(tmp_path / "big", [path], chunk_rows=50_000)
    r2, s2, _ = run(tmp_path / "small", [path], chunk_rows=7)
    assert r1.counts == r2.counts
    for s in ingest.SPLITS:
        pd.testing.assert_frame_equal(s1[s].sort_values("prompt_id").reset_index(drop=True),
                                      s2[s].sort_values("prompt_id").reset_index(drop=True))


def test_conservation_mismatch_fails():
    counts = ingest.Counts(read=10, quarantined=1, duplicates=1, capped=1, kept={"train": 5, "val": 1, "test": 0})
    with pytest.raises(ingest.IngestError, match="lost rows: read 10, accounted for 9"):
        counts.check()


def test_quarantine_gate_fails_the_stage(tmp_path):
    (tmp_path / "raw").mkdir()
    path = write_jsonl(tmp_path / "raw" / "a.jsonl", [rec(1), "{bad", "{bad"])
    with pytest.raises(ingest.IngestError, match=r"2 of 3 rows \(66.7%\) quarantined"):
        ingest.run([path.parent], tmp_path / "out", tmp_path / "q", tmp_path / "reports", cfg())
    assert json.loads((tmp_path / "reports" / "summary.json").read_text())["quarantined"] == 2
