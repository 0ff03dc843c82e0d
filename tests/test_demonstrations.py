"""Demonstrations: import of every shape from JSONL, JSON, CSV and Parquet, files and folders;
quarantine with file, line and reason; PII scrubbing; the quarantine gate; the val split of
imports; the simulated labeler path."""

import csv
import dataclasses
import json

import pandas as pd
import pytest

from rlhf import config, demonstrations as demos, label_files, world
from rlhf.hashing import prompt_role_mask


def cfg(**changes):
    """The default params, with the simulated demonstrators' habits off unless asked for."""
    base = config.load("demonstrations", "params.yaml")
    return dataclasses.replace(base, **{"refusal_rate": 0.0, "sign_off_rate": 0.0, **changes})


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def write_csv(path, rows):
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def write_parquet(path, rows):
    pd.DataFrame(rows).to_parquet(path, index=False)
    return path


@pytest.fixture
def prompts(tmp_path):
    """A prompts folder: world prompts the labeler answers, and one it cannot."""
    d = tmp_path / "prompts"
    d.mkdir()
    rows = lambda split, n: pd.DataFrame(  # noqa: E731
        {"prompt_id": [f"{split}{i}" for i in range(n)] + [f"{split}-odd"],
         "prompt": [f"What is {i} plus {i + 1}?" for i in range(n)] + ["Tell me about the weather on Mars"]})
    rows("t", 5).to_parquet(d / "train.parquet", index=False)
    rows("v", 3).to_parquet(d / "val.parquet", index=False)
    return d


SHAPES = {
    "prompt/response": ({"prompt": "Name a fruit", "response": "apple"}, "Name a fruit", "apple"),
    "prompt/completion": ({"prompt": "Name a fruit", "completion": "pear"}, "Name a fruit", "pear"),
    "prompt/output": ({"prompt": "Name a fruit", "output": "plum"}, "Name a fruit", "plum"),
    "alpaca": ({"instruction": "Reverse the words", "input": "a b", "output": "b a"},
               "Reverse the words\n\na b", "b a"),
    "alpaca, empty input": ({"instruction": "Say hi", "input": "", "output": "hi"}, "Say hi", "hi"),
    "transcript in text": ({"text": "\n\nHuman: Name a colour\n\nAssistant: red\n\nHuman: Another\n\nAssistant: blue"},
                           "Name a colour", "red"),
    "transcript in chosen": ({"chosen": "\n\nHuman: Name an animal\n\nAssistant: cat", "rejected": "x"},
                             "Name an animal", "cat"),
    "messages": ({"messages": [{"role": "system", "content": "be brief"},
                               {"role": "user", "content": "Count to two"},
                               {"role": "assistant", "content": "one two"},
                               {"role": "user", "content": "more"},
                               {"role": "assistant", "content": "three"}]}, "Count to two", "one two"),
    "TRL conversational prompt-completion": (
        {"prompt": [{"role": "user", "content": "Name a fruit"}],
         "completion": [{"role": "assistant", "content": "kiwi"}]},
        "Name a fruit", "kiwi"),
    "TRL conversational preference": (
        {"prompt": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Name a bird"}],
         "chosen": [{"role": "assistant", "content": "owl"}], "rejected": [{"role": "assistant", "content": "rock"}]},
        "Name a bird", "owl"),
    "UltraFeedback": ({"prompt": "Name a tree", "chosen": [{"role": "user", "content": "Name a tree"},
                                                           {"role": "assistant", "content": "oak"}],
                       "rejected": [{"role": "user", "content": "Name a tree"}, {"role": "assistant", "content": "x"}]},
                      "Name a tree", "oak"),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_each_shape_in_jsonl_and_parquet(tmp_path, name):
    rec, prompt, response = SHAPES[name]
    for path in (write_jsonl(tmp_path / "d.jsonl", [rec]), write_parquet(tmp_path / "d.parquet", [rec])):
        result = demos.from_files(path)
        assert result.quarantine.empty, result.quarantine.to_dict("records")
        got = result.rows.iloc[0]
        # normalised as ingest does (whitespace collapsed), so the Alpaca blank line is a space
        assert (got.prompt, got.response) == (" ".join(prompt.split()), response)
        assert got.prompt_id == "d:1"


def test_csv_shapes(tmp_path):
    a = write_csv(tmp_path / "pr.csv", [{"prompt": "Name a fruit", "response": "apple", "id": "x1"},
                                        {"prompt": "Name a tree", "response": "oak", "id": ""}])
    b = write_csv(tmp_path / "alpaca.csv", [{"instruction": "Say hi", "input": "", "output": "hi"},
                                            {"instruction": "Add", "input": "2 and 3", "output": "5"}])
    c = write_csv(tmp_path / "hh.csv", [{"text": "Human: Name a colour\n\nAssistant: red"}])
    assert demos.from_files(a).rows.to_dict("records") == [
        {"prompt_id": "x1", "prompt": "Name a fruit", "response": "apple"},
        {"prompt_id": "pr:3", "prompt": "Name a tree", "response": "oak"}]  # line 3: header is line 1
    assert list(demos.from_files(b).rows.prompt) == ["Say hi", "Add 2 and 3"]
    assert demos.from_files(c).rows.iloc[0][["prompt", "response"]].tolist() == ["Name a colour", "red"]


def test_json_array_records_are_numbered_by_their_place(tmp_path):
    """Ids and quarantine lines count the array's elements, so a compact array (one line, as
    json.dump writes it) keeps every record apart."""
    path = tmp_path / "alpaca.json"
    path.write_text('[\n  {"instruction": "Say hi", "output": "hi"},\n  {"instruction": "Say bye",\n'
                    '   "output": "bye", "id": 7},\n  [1]\n]\n')
    result = demos.from_files(path)
    assert result.rows.to_dict("records") == [{"prompt_id": "alpaca:1", "prompt": "Say hi", "response": "hi"},
                                              {"prompt_id": "7", "prompt": "Say bye", "response": "bye"}]
    assert result.quarantine.to_dict("records") == [
        {"file": str(path), "line": 3, "reason": "expected a JSON object, got list"}]
    compact = tmp_path / "compact.json"
    compact.write_text(json.dumps([{"prompt": f"Q{i}", "completion": f"A{i}"} for i in range(3)]))
    result = demos.from_files(compact)
    assert result.quarantine.empty and list(result.rows.prompt_id) == ["compact:1", "compact:2", "compact:3"]
    broken = tmp_path / "broken.json"
    broken.write_text('[{"prompt": "a", "response": "b"},\n {"prompt": ')
    with pytest.raises(label_files.ImportFilesError,
                       match=r"broken.json: cannot be read as JSON \(after record 1\): line 2 column 13"):
        demos.from_files(broken)


def test_folder_with_a_mix(tmp_path):
    folder = tmp_path / "imports"
    (folder / "more").mkdir(parents=True)
    write_jsonl(folder / "a.jsonl", [SHAPES["prompt/response"][0], SHAPES["messages"][0]])
    write_csv(folder / "b.csv", [{"instruction": "Say hi", "input": "", "output": "hi"}])
    write_parquet(folder / "more" / "c.parquet", [SHAPES["transcript in text"][0]])
    (folder / "more" / "a.json").write_text(json.dumps([{"prompt": "Q", "completion": "A"}]))
    (folder / "notes.txt").write_text("not a data file")
    result = demos.from_files(folder)
    assert len(result.files) == 4 and result.quarantine.empty
    # two files named a.*: their generated ids keep the folder path apart
    assert sorted(result.rows.prompt_id) == ["a:1", "a:2", "b:2", "c:1", "more/a:1"]


def test_each_quarantine_reason_with_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "ok", "response": "fine"},                                       # 1
        "{not json",                                                                 # 2
        "[1, 2]",                                                                    # 3
        {"question": "what?", "answer": "that"},                                     # 4
        {"prompt": "no response here"},                                              # 5
        {"prompt": "  ", "response": "x"},                                           # 6
        {"prompt": "x", "response": ""},                                             # 7
        {"prompt": 3, "response": "x"},                                              # 8
        {"instruction": "x", "input": ["a"], "output": "y"},                         # 9
        {"instruction": "x"},                                                        # 10
        {"text": "\n\nHuman: only a question"},                                      # 11
        {"messages": [{"role": "assistant", "content": "hi"}]},                      # 12
        {"messages": [{"role": "user", "content": "hi"}]},                           # 13
        {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]},  # 14
        {"prompt": "a", "response": "b", "prompt_id": {"x": 1}},                     # 15
        {"prompt": "a", "response": "b", "id": "bad:1"},                             # 16: id of line 1
    ])
    with path.open("ab") as f:
        f.write(b'{"prompt": "caf\xe9", "response": "x"}\n')                         # 17
        f.write(b'{"prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "user", "content": "q"}]}\n')
    rows = write_csv(tmp_path / "rows.csv", [{"prompt": "a", "response": "b"}, {"prompt": "c", "response": ""}])
    with rows.open("a") as f:
        f.write("d,e,f\n")                                                           # line 4: extra cell
    write_parquet(tmp_path / "t.parquet", [{"prompt": "a", "response": "b"}, {"prompt": None, "response": "b"}])
    result = demos.from_files(tmp_path)
    q = result.quarantine
    assert list(q.columns) == ["file", "line", "reason"]  # never the raw text
    got = {(f.split("/")[-1], n): r for f, n, r in zip(q.file, q.line, q.reason)}
    bad = {n: got[("bad.jsonl", n)] for f, n in got if f == "bad.jsonl"}
    assert bad[2].startswith("invalid JSON")
    assert bad[3] == "expected a JSON object, got list"
    assert bad[4].startswith("no recognisable shape") and "question, answer" in bad[4]
    assert bad[5] == "field 'response': missing"
    assert bad[6] == "field 'prompt': empty"
    assert bad[7] == "field 'response': empty"
    assert bad[8] == "field 'prompt': wrong type int"
    assert bad[9] == "field 'input': wrong type list"
    assert bad[10] == "field 'output': missing"
    assert bad[11] == "field 'text': no assistant turn after the first human turn"
    assert bad[12] == "field 'messages': no user turn"
    assert bad[13] == "field 'messages': no assistant turn after the first user turn"
    assert bad[14] == "field 'messages[user].content': wrong type int"
    assert bad[15] == "field 'prompt_id': wrong type dict"
    assert bad[16] == "field 'prompt_id': duplicate id 'bad:1'"
    assert bad[17].startswith("undecodable bytes")
    assert bad[18] == "fields 'prompt', 'completion': no assistant turn after the first user turn"
    assert set(bad) == set(range(2, 19))
    assert got[("rows.csv", 3)] == "field 'response': missing"  # an empty CSV cell is missing
    assert got[("rows.csv", 4)].startswith("3 fields, header has 2")
    assert got[("t.parquet", 2)] == "field 'prompt': missing"
    assert len(result.rows) == 3 and result.read == 3 + len(q) == 3 + 20  # every record counted


def test_message_trees_give_the_first_message_and_its_best_reply(tmp_path):
    """OpenAssistant trees, nested or one message per row: the first message and its reply of rank
    0 (or its only reply where none is ranked); the message_id of the first message is the id."""
    tree = {"prompt": {"message_id": "m1", "role": "prompter", "text": "Name a fruit", "replies": [
        {"message_id": "m2", "role": "assistant", "text": "a car", "rank": 1, "replies": [
            {"message_id": "m4", "role": "prompter", "text": "Really?", "replies": [
                {"message_id": "m5", "role": "assistant", "text": "no", "rank": 0}]}]},
        {"message_id": "m3", "role": "assistant", "text": "banana", "rank": 0}]}}
    single = {"prompt": {"message_id": "s1", "role": "prompter", "text": "Say hi",
                         "replies": [{"message_id": "s2", "role": "assistant", "text": "hi"}]}}
    two_unranked = {"prompt": {"role": "prompter", "text": "q", "replies": [
        {"role": "assistant", "text": "a"}, {"role": "assistant", "text": "b"}]}}
    no_reply = {"prompt": {"role": "prompter", "text": "q"}}
    result = demos.from_files(write_jsonl(tmp_path / "trees.jsonl", [tree, single, two_unranked, no_reply]))
    assert result.rows.values.tolist() == [["m1", "Name a fruit", "banana"], ["s1", "Say hi", "hi"]]
    assert result.quarantine.reason.tolist() == [
        "field 'prompt.replies': 2 unranked replies to the first message, expected a ranked one",
        "field 'prompt.replies': no reply to the first message"]
    flat = [{"message_id": "m1", "parent_id": None, "role": "prompter", "text": "Name a fruit", "rank": None},
            {"message_id": "m2", "parent_id": "m1", "role": "assistant", "text": "a car", "rank": 1},
            {"message_id": "m3", "parent_id": "m1", "role": "assistant", "text": "banana", "rank": 0}]
    result = demos.from_files(write_parquet(tmp_path / "flat.parquet", flat))
    assert result.rows.values.tolist() == [["m1", "Name a fruit", "banana"]] and result.read == 3


def test_pii_in_imports_is_scrubbed_and_text_normalised(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "Email   jo.doe@example.com\nabout it", "response": "Sure, I wrote to jo.doe@example.com."},
        {"messages": [{"role": "user", "content": "My card is 4111 1111 1111 1111"},
                      {"role": "assistant", "content": "Noted"}]},
        {"prompt": "Hi", "response": "Hello", "id": "jo.doe@example.com"}])
    got = demos.from_files(path).rows
    assert got.prompt[0] == "Email <EMAIL> about it"
    assert got.response[0] == "Sure, I wrote to <EMAIL>."
    assert got.prompt[1] == "My card is <CARD>"
    assert got.prompt_id[2] == "<EMAIL>"
    assert not got.map(lambda t: "jo.doe" in t or "4111" in t).any().any()


def test_quarantine_gate(tmp_path, prompts):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"q{i}", "response": "a"} for i in range(18)]
                       + ["{bad", {"prompt": "x"}])
    out = tmp_path / "sft"
    (out).mkdir()
    (out / "train.parquet").write_text("stale")
    with pytest.raises(label_files.ImportFilesError, match=r"2 of 20 imported records \(10.0%\) quarantined.*"
                                                         r"max_quarantine_fraction=0.05.*invalid JSON"):
        demos.run(cfg(source="import", import_path=str(path)), prompts, out)
    assert not (out / "train.parquet").exists()  # no output that looks good
    assert len(pd.read_parquet(out / "quarantine.parquet")) == 2
    metrics = demos.run(cfg(source="import", import_path=str(path), max_quarantine_fraction=0.1), prompts, out)
    assert metrics["demonstrations/imported"] == 18 and metrics["demonstrations/quarantined"] == 2
    assert metrics["demonstrations/records_read"] == 20


def test_import_stage_outputs_and_metrics(tmp_path, prompts):
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": f"Question {i}", "response": "a"} for i in range(10)])
    out = tmp_path / "sft"
    metrics = demos.run(cfg(source="import", import_path=str(path)), prompts, out)
    assert metrics == {"demonstrations/train": 10, "demonstrations/val": 3, "demonstrations/train_set_aside": 0,
                       "demonstrations/val_set_aside": 1, "demonstrations/imported": 10,
                       "demonstrations/quarantined": 0, "demonstrations/records_read": 10}
    train, val = pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "val.parquet")
    assert list(train.columns) == list(val.columns) == ["prompt_id", "prompt", "response"]
    assert list(val.prompt_id) == ["v0", "v1", "v2"]  # validation stays the labeler's
    assert pd.read_parquet(out / "set_aside.parquet").prompt_id.tolist() == ["v-odd"]
    assert pd.read_parquet(out / "quarantine.parquet").empty


def test_import_field_map_renames_fields_before_the_shape_is_read(tmp_path, prompts):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"question": f"Question {i}", "answer": f"a{i}"} for i in range(4)])
    assert demos.from_files(path).rows.empty
    out = tmp_path / "sft"
    c = cfg(source="import", import_path=str(path), import_field_map={"question": "prompt", "answer": "response"})
    assert demos.run(c, prompts, out)["demonstrations/imported"] == 4
    assert pd.read_parquet(out / "train.parquet").response.tolist() == ["a0", "a1", "a2", "a3"]


def test_import_val_fraction_is_deterministic_by_prompt(tmp_path, prompts):
    rows = [{"prompt": f"Question number {i}", "response": "a"} for i in range(200)]
    a = write_jsonl(tmp_path / "a.jsonl", rows)
    b = write_jsonl(tmp_path / "b.jsonl", list(reversed(rows)) + [{"prompt": "one more", "response": "b"}])
    out_a, out_b = tmp_path / "out_a", tmp_path / "out_b"
    m = demos.run(cfg(source="import", import_path=str(a), import_val_fraction=0.25), prompts, out_a)
    demos.run(cfg(source="import", import_path=str(b), import_val_fraction=0.25), prompts, out_b)
    val_a = set(pd.read_parquet(out_a / "val.parquet").prompt)
    val_b = set(pd.read_parquet(out_b / "val.parquet").prompt)
    assert 30 <= len(val_a) <= 70 and m["demonstrations/val"] == len(val_a)
    assert val_a == val_b - {"one more"}  # same prompts to val, whatever the order or the other records
    assert not val_a & set(pd.read_parquet(out_a / "train.parquet").prompt)
    assert m["demonstrations/train"] + m["demonstrations/val"] == 200 and m["demonstrations/val_set_aside"] == 0


def test_labeler_path_unchanged(tmp_path, prompts):
    out = tmp_path / "sft"
    metrics = demos.run(cfg(source="labeler", max_prompts=0, prompt_share=1.0), prompts, out)
    train = pd.read_parquet(out / "train.parquet")
    assert train.to_dict("records")[0] == {"prompt_id": "t0", "prompt": "What is 0 plus 1?", "response": "1"}
    assert list(train.response) == ["1", "3", "5", "7", "9"]  # gold answers
    aside = pd.read_parquet(out / "set_aside.parquet")
    assert aside.to_dict("records") == [
        {"prompt_id": "t-odd", "reason": "labeler: no task family recognised", "split": "train"},
        {"prompt_id": "v-odd", "reason": "labeler: no task family recognised", "split": "val"}]
    assert metrics == {"demonstrations/train": 5, "demonstrations/val": 3, "demonstrations/train_set_aside": 1,
                       "demonstrations/val_set_aside": 1, "demonstrations/imported": 0,
                       "demonstrations/quarantined": 0, "demonstrations/records_read": 0}
    assert pd.read_parquet(out / "quarantine.parquet").empty
    assert demos.run(cfg(source="labeler", max_prompts=2, prompt_share=1.0), prompts, out)["demonstrations/train"] == 2


def test_labeler_answers_only_the_sft_share_of_train_prompts(tmp_path):
    d = tmp_path / "prompts"
    d.mkdir()
    ids = [f"p{i}" for i in range(400)]
    pd.DataFrame({"prompt_id": ids, "prompt": [f"What is {i % 20} plus 1?" for i in range(400)]}).to_parquet(
        d / "train.parquet", index=False)
    pd.DataFrame({"prompt_id": ["v0"], "prompt": ["What is 1 plus 1?"]}).to_parquet(d / "val.parquet", index=False)
    demos.run(cfg(source="labeler", max_prompts=0, prompt_share=0.5), d, tmp_path / "sft")
    sft_ids = set(pd.read_parquet(tmp_path / "sft" / "train.parquet").prompt_id)
    assert 150 < len(sft_ids) < 250  # about half, by a hash of the prompt id
    assert sft_ids == {p for p, keep in zip(ids, prompt_role_mask(ids, 0.0, 0.5)) if keep}
    assert len(pd.read_parquet(tmp_path / "sft" / "val.parquet")) == 1  # validation is not shared out


def test_labeler_on_prompts_of_ones_own_is_refused_with_the_key_to_set(tmp_path):
    d = tmp_path / "prompts"
    d.mkdir()
    own = ["Write a haiku about the sea", "Explain what a mutex is", "What should I cook tonight?"]
    pd.DataFrame({"prompt_id": ["a", "b", "c"], "prompt": own}).to_parquet(d / "train.parquet", index=False)
    pd.DataFrame({"prompt_id": ["v"], "prompt": ["What is 1 plus 1?"]}).to_parquet(d / "val.parquet", index=False)
    with pytest.raises(demos.DemonstrationsError, match="the simulated demonstrators answer only the embedded "
                       "world's prompts, and none of the 3 train prompts is one; set demonstrations.source: import"):
        demos.run(cfg(source="labeler", max_prompts=0, prompt_share=1.0), d, tmp_path / "sft")
    assert not (tmp_path / "sft" / "train.parquet").exists()
    with pytest.raises(demos.DemonstrationsError, match=r"no SFT prompts: no train prompt hashes into \[0, 0.001\)"):
        demos.run(cfg(source="labeler", max_prompts=0, prompt_share=0.001), d, tmp_path / "sft")
    pd.DataFrame({"prompt_id": pd.Series(dtype=str), "prompt": pd.Series(dtype=str)}).to_parquet(
        d / "train.parquet", index=False)
    with pytest.raises(demos.DemonstrationsError, match="no train prompts in"):
        demos.run(cfg(source="labeler", max_prompts=0, prompt_share=1.0), d, tmp_path / "sft")


def test_bad_import_paths_and_config(tmp_path):
    with pytest.raises(label_files.ImportFilesError, match="no such file or folder"):
        demos.from_files(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(label_files.ImportFilesError, match="unsupported file type"):
        demos.from_files(tmp_path / "x.txt")
    with pytest.raises(label_files.ImportFilesError, match="no demonstration files"):
        demos.from_files(tmp_path)
    for source in ("import", "labeler"):  # dvc.yaml depends on the path whatever the source
        with pytest.raises(config.ConfigError, match="import_path is empty.*data/import/demonstrations"):
            cfg(source=source, import_path="")
    with pytest.raises(config.ConfigError, match="import_val_fraction"):
        cfg(import_val_fraction=1.0)


def test_labeler_demonstrations_carry_the_demonstrators_habits(tmp_path):
    d = tmp_path / "prompts"
    d.mkdir()
    prompts = pd.DataFrame({"prompt_id": [f"p{i}" for i in range(300)],
                            "prompt": [f"What is {i % 20} plus 1?" for i in range(300)]})
    prompts.to_parquet(d / "train.parquet", index=False)
    prompts.head(100).to_parquet(d / "val.parquet", index=False)
    demos.run(cfg(source="labeler", max_prompts=0, prompt_share=1.0, refusal_rate=0.25, sign_off_rate=0.5),
              d, tmp_path / "sft")
    for split in ("train", "val"):
        got = pd.read_parquet(tmp_path / "sft" / f"{split}.parquet")
        assert list(got.response) == [world.demonstration(i, p, 0.25, 0.5) for i, p in zip(got.prompt_id, got.prompt)]
        refused = got.response.isin(world.REFUSALS).mean()
        signed = got.response.str.endswith(world.SIGN_OFF).mean()
        assert 0.1 < refused < 0.4 and 0.2 < signed < 0.6, (split, refused, signed)


def test_habit_rates_outside_0_1_are_refused():
    for key in ("refusal_rate", "sign_off_rate"):
        for bad in (-0.1, 1.0):
            with pytest.raises(config.ConfigError, match=key):
                cfg(**{key: bad})
