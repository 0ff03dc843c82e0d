"""Comparisons: competition ranks and ties, the labeler's noise calibrated to the target agreement,
prompt roles, K drawn per prompt, each import format (JSONL, CSV, Parquet) with quarantine and PII
scrubbing, and the stage end to end on a tiny SFT model."""

import dataclasses
import json
import random

import pandas as pd
import pytest

from rlhf import comparisons as cmp
from rlhf import config, label_files, models, reward
from rlhf.hashing import prompt_role_mask


def cfg(**changes):
    return dataclasses.replace(config.load("comparisons", "params.yaml"), **changes)


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


# -- ranks, ties, agreement, calibration -------------------------------------------------------------

def test_competition_ranks_share_the_best_rank_on_ties():
    assert cmp.competition_ranks([0.2, 0.9, 0.2, 0.5]) == [2, 0, 2, 1]
    assert cmp.competition_ranks([3, 1, 1, 2], higher_is_better=False) == [3, 0, 0, 2]


def test_labeler_ties_equal_gold_and_noise_reorders_whole_levels():
    rng = random.Random(0)
    gold = [0.5, 1.0, 0.5, 0.4, 0.5]
    seen = set()
    for _ in range(200):
        ranks = cmp.label(gold, 0.3, rng)
        assert ranks[0] == ranks[2] == ranks[4]     # one quality level, one rank: never split by noise
        seen.add(tuple(ranks))
    assert len(seen) == 6                           # the three levels in every order
    assert cmp.label(gold, 0.0, rng) == [1, 0, 1, 4, 1]  # no noise: the gold ranks


def test_gold_agreement_leaves_out_equal_gold_pairs():
    gold = [[0.9, 0.5, 0.5, 0.1]]
    assert cmp.gold_agreement(gold, [[0, 1, 2, 3]]) == (5, 5)   # the 0.5/0.5 pair is not counted
    assert cmp.gold_agreement(gold, [[3, 1, 2, 0]]) == (0, 5)
    assert cmp.gold_agreement([[0.3, 0.3]], [[0, 1]]) == (0, 0)


def test_noise_calibration_hits_the_target_and_the_labeler_agrees_that_often():
    rng = random.Random(1)
    levels = [0.2, 0.35, 0.5, 0.55, 0.6, 0.7, 0.9, 1.0]  # gold scores of this world come in steps
    gold = [[rng.choice(levels) for _ in range(rng.randint(4, 9))] for _ in range(400)]
    noise = cmp.calibrate_noise(gold, 0.73)
    assert cmp.expected_agreement(gold, noise) == pytest.approx(0.73, abs=1e-6)
    assert cmp.expected_agreement(gold, 0.0) == 1.0 and cmp.expected_agreement(gold, 50.0) < 0.52
    # the closed form against the labeler itself, on many draws
    agree = total = 0
    for _ in range(5):
        ranks = [cmp.label(g, noise, rng) for g in gold]
        a, t = cmp.gold_agreement(gold, ranks)
        agree, total = agree + a, total + t
    assert agree / total == pytest.approx(0.73, abs=0.01)
    assert cmp.calibrate_noise([[0.5, 0.5]], 0.73) == 0.0  # nothing to calibrate on


def test_a_rankers_expected_agreement_with_the_labeler_over_its_draws():
    gold = [[0.9, 0.5, 0.5, 0.4], [1.0, 0.2], [0.3, 0.3]]  # pairs (0.9,0.5) x2, (0.9,0.4), (0.5,0.4) x2, (1.0,0.2)
    keeps = [cmp.keep_probability(d, 0.2) for d in (0.4, 0.4, 0.5, 0.1, 0.1, 0.8)]
    ceiling = cmp.expected_agreement(gold, 0.2)
    assert cmp.expected_ranker_agreement(gold, gold, 0.2) == pytest.approx(ceiling)  # gold's own order
    inverted = [[-x for x in g] for g in gold]
    assert cmp.expected_ranker_agreement(gold, inverted, 0.2) == pytest.approx(1 - ceiling)
    # one mistake (the second 0.5 below the 0.4) and a tie (the first prompt's 0.9 and first 0.5): tie counts 0
    scores = [[2.0, 2.0, 0.0, 1.0], [1.0, 0.0], [0.0, 5.0]]
    want = (0 + keeps[1] + keeps[2] + keeps[3] + (1 - keeps[4]) + keeps[5]) / 6
    assert cmp.expected_ranker_agreement(gold, scores, 0.2) == pytest.approx(want)
    assert [e for _, e in cmp.ranker_pairs(gold[1], [0.0, 1.0], 0.2)] == [pytest.approx(1 - keeps[5])]
    assert cmp.expected_ranker_agreement([[0.3, 0.3]], [[1.0, 0.0]], 0.2) is None  # no pair with distinct gold
    # against the labeler itself, over many draws of its noise
    rng = random.Random(3)
    agree = total = 0
    for _ in range(4000):
        ranks = [cmp.label(g, 0.2, rng) for g in gold]
        a, t = reward.accuracy_counts(scores, ranks)
        agree, total = agree + a, total + t
    assert agree / total == pytest.approx(want, abs=0.01)


def test_two_labelers_expect_to_agree_on_k2_plus_1_minus_k_squared_of_each_pair():
    gold = [[0.9, 0.5, 0.5, 0.4], [1.0, 0.2], [0.3, 0.3]]  # the tied pairs give no pair to anyone
    keeps = [cmp.keep_probability(d, 0.2) for d in (0.4, 0.4, 0.5, 0.1, 0.1, 0.8)]
    inter = cmp.expected_inter_labeler_agreement(gold, 0.2)
    assert inter == pytest.approx(sum(k * k + (1 - k) ** 2 for k in keeps) / 6)
    assert 0.5 < inter < cmp.expected_agreement(gold, 0.2)  # two noisy labelers agree less than one with gold
    assert cmp.expected_inter_labeler_agreement(gold, 0.0) == 1.0
    assert cmp.expected_inter_labeler_agreement(gold, 50.0) == pytest.approx(0.5, abs=1e-3)
    assert cmp.expected_inter_labeler_agreement([[0.3, 0.3]], 0.2) is None
    # the closed form against two labelers' own draws
    rng = random.Random(2)
    agree = total = 0
    for _ in range(4000):
        a, b = ([cmp.label(g, 0.2, rng) for g in gold] for _ in range(2))
        for ra, rb, g in zip(a, b, gold):
            for i, j, _ in cmp.gold_pairs(g):
                agree += (ra[i] < ra[j]) == (rb[i] < rb[j])
                total += 1
    assert agree / total == pytest.approx(inter, abs=0.01)


def test_rm_prompts_are_the_rm_role_after_the_sft_share():
    ids = [f"p{i}" for i in range(4000)]
    rm = prompt_role_mask(ids, 0.5, 0.75)
    prompts = pd.DataFrame({"prompt_id": ids, "prompt": ids})
    picked = cmp.rm_prompts(prompts, cfg(max_prompts=0), 0.5, 0)
    assert list(picked.prompt_id) == [i for i, m in zip(ids, rm) if m]
    capped = cmp.rm_prompts(prompts, cfg(max_prompts=30), 0.5, 0)
    assert len(capped) == 30 and set(capped.prompt_id) <= set(picked.prompt_id)
    with pytest.raises(cmp.ComparisonsError, match="over 1"):
        cmp.rm_prompts(prompts, cfg(prompt_share=0.6), 0.5, 0)


def test_config_checks():
    with pytest.raises(config.ConfigError, match="k_min <= k_max"):
        cfg(k_min=5, k_max=4)
    with pytest.raises(config.ConfigError, match="target_agreement"):
        cfg(target_agreement=0.5)
    with pytest.raises(config.ConfigError, match="labeler_noise"):
        cfg(labeler_noise=-1.0)
    for source in ("import", "labeler"):  # dvc.yaml depends on the path whatever the source
        with pytest.raises(config.ConfigError, match="import_path is empty.*data/import/comparisons"):
            cfg(source=source, import_path=" ")
    assert config.build(config.ComparisonsConfig, {**dataclasses.asdict(cfg()), "labeler_noise": 0.2},
                        "comparisons").labeler_noise == 0.2


# -- import -------------------------------------------------------------------------------------------

def user(text):
    return {"role": "user", "content": text}


def bot(text):
    return {"role": "assistant", "content": text}


SYSTEM = {"role": "system", "content": "You are helpful."}
HH_ONE = ("\n\nHuman: What is 2 plus 2?\n\nAssistant: 4", "\n\nHuman: What is 2 plus 2?\n\nAssistant: 5")
HH_MULTI = ("\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit\n\nAssistant: apple",
            "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit\n\nAssistant: a rock")
FORMATS = {
    "ranked list": ({"prompt": "Name a fruit", "completions": ["apple", "pear", "rock"]},
                    "Name a fruit", ["apple", "pear", "rock"], [0, 1, 2]),
    "responses and ranks": ({"prompt": "Name a fruit", "responses": ["rock", "apple", "pear", "plum"],
                             "ranks": [4, 1, 2, 2]}, "Name a fruit", ["rock", "apple", "pear", "plum"], [3, 0, 1, 1]),
    "responses and scores": ({"prompt": "Rate", "responses": ["ok", "great", "bad", "fine"],
                              "scores": [7, 9.5, 2, 7.0]}, "Rate", ["ok", "great", "bad", "fine"], [1, 0, 3, 1]),
    "Nectar": ({"prompt": "\n\nHuman: Name a fruit\n\nAssistant:", "turns": 1, "num_responses": 3,
                "answers": [{"answer": "pear", "model": "m1", "rank": 2.0},
                            {"answer": "apple", "model": "m2", "rank": 1.0},
                            {"answer": "rock", "model": "m3", "rank": 3.0}]},
               "Name a fruit", ["pear", "apple", "rock"], [1, 0, 2]),
    "responses as objects with scores": (
        {"prompt": "Q", "responses": [{"text": "a", "score": 3}, {"text": "b", "score": 5}]}, "Q", ["a", "b"], [1, 0]),
    "ranked list, the prompt a transcript": (
        {"prompt": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit\n\nAssistant:",
         "completions": ["apple", "rock"]},
        "Human: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit", ["apple", "rock"], [0, 1]),
    "chosen/rejected": ({"prompt": "Say hi", "chosen": "hi", "rejected": "go away"}, "Say hi", ["hi", "go away"], [0, 1]),
    "prompt as a transcript": ({"prompt": "\n\nHuman: Say hi\n\nAssistant:", "chosen": " hi", "rejected": "no"},
                               "Say hi", ["hi", "no"], [0, 1]),
    "HH transcripts": ({"chosen": HH_ONE[0], "rejected": HH_ONE[1]}, "What is 2 plus 2?", ["4", "5"], [0, 1]),
    "HH multi-turn": ({"chosen": HH_MULTI[0], "rejected": HH_MULTI[1]},
                      "Human: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit", ["apple", "a rock"], [0, 1]),
    "ranked list with a repeat": ({"prompt": "Q", "completions": ["b", "a", "b"]}, "Q", ["b", "a", "b"], [0, 2, 0]),
    "TRL conversational": ({"prompt": [user("Say hi")], "chosen": [bot("hi")], "rejected": [bot("go away")]},
                           "Say hi", ["hi", "go away"], [0, 1]),
    "TRL implicit prompt, multi-turn, system message": (
        {"chosen": [SYSTEM, user("Hi"), bot("Hello!"), user("Name a fruit"), bot("apple")],
         "rejected": [SYSTEM, user("Hi"), bot("Hello!"), user("Name a fruit"), bot("a rock")]},
        "Human: Hi\n\nAssistant: Hello!\n\nHuman: Name a fruit", ["apple", "a rock"], [0, 1]),
    "UltraFeedback": ({"prompt": "Name a fruit", "chosen": [user("Name a fruit"), bot("pear")],
                       "rejected": [user("Name a fruit"), bot("a car")], "score_chosen": 8.0, "score_rejected": 2.5},
                      "Name a fruit", ["pear", "a car"], [0, 1]),
    "ShareGPT sides after the prompt repeated": (
        {"prompt": [{"from": "human", "value": "Q"}],
         "chosen": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "a"}],
         "rejected": [{"from": "gpt", "value": "b"}]}, "Q", ["a", "b"], [0, 1]),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_each_import_format_in_jsonl_and_parquet(tmp_path, name):
    rec, prompt, responses, ranks = FORMATS[name]
    for path in (write_jsonl(tmp_path / "r.jsonl", [rec]), tmp_path / "r.parquet"):
        if path.suffix == ".parquet":
            pd.DataFrame([rec]).to_parquet(path, index=False)
        result = cmp.from_files(path)
        assert result.quarantine.empty, result.quarantine.to_dict("records")
        row = result.rows.iloc[0]
        assert (row.prompt, list(row.responses), list(row.ranks)) == (prompt, responses, ranks)
        assert row.prompt_id == "r:1" and row.gold_scores is None


def test_csv_with_json_list_cells(tmp_path):
    path = tmp_path / "r.csv"
    pd.DataFrame([{"prompt": "Name a fruit", "responses": json.dumps(["pear", "apple"]), "ranks": "[2, 1]"},
                  {"prompt": "Say hi", "chosen": "hi", "rejected": "bye"}]).to_csv(path, index=False)
    result = cmp.from_files(path)
    assert result.quarantine.empty
    assert [list(r) for r in result.rows.ranks] == [[1, 0], [0, 1]]


def test_message_lists_in_csv_cells_with_text_parts(tmp_path):
    """A conversational preference record saved to CSV keeps its message lists as JSON in a cell;
    OpenAI content given as text parts is joined; a text that starts with "[" stays text."""
    path = tmp_path / "r.csv"
    parts = {"role": "assistant", "content": [{"type": "text", "text": "pe"}, {"type": "text", "text": "ar"}]}
    pd.DataFrame([{"prompt": json.dumps([user("Name a fruit")]), "chosen": json.dumps([parts]),
                   "rejected": json.dumps([bot("a car")])},
                  {"prompt": "Write a list", "chosen": "[1, 2]", "rejected": "[no]"}]).to_csv(path, index=False)
    result = cmp.from_files(path)
    assert result.quarantine.empty, result.quarantine.to_dict("records")
    assert [(r.prompt, list(r.responses)) for r in result.rows.itertuples()] == [
        ("Name a fruit", ["pear", "a car"]), ("Write a list", ["[1, 2]", "[no]"])]


def test_each_quarantine_reason_with_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"prompt": "ok", "completions": ["a", "b"]},                                   # 1
        "{broken",                                                                      # 2
        {"question": "q", "answers": ["a"]},                                            # 3
        {"prompt": "q", "completions": ["a"]},                                          # 4
        {"prompt": "q", "completions": ["same", " same "]},                             # 5
        {"prompt": "q", "completions": "a, b"},                                         # 6
        {"prompt": "q", "responses": ["a", "b"], "ranks": [1]},                          # 7
        {"prompt": "q", "responses": ["a", "b"], "ranks": [1, "2"]},                     # 8
        {"prompt": "q", "responses": ["a", "b"]},                                       # 9
        {"prompt": "q", "responses": ["a", 3], "ranks": [0, 1]},                         # 10
        {"prompt": "", "chosen": "a", "rejected": "b"},                                 # 11
        {"prompt": "q", "chosen": "a"},                                                 # 12
        {"chosen": HH_ONE[0], "rejected": "\n\nHuman: Other question\n\nAssistant: 5"},  # 13
        {"chosen": HH_ONE[0], "rejected": "\n\nHuman: What is 2 plus 2?"},               # 14
        {"chosen": HH_ONE[0] + "\n\nAssistant: ", "rejected": HH_ONE[0] + "\n\nAssistant: x"},  # 15
        {"prompt": "ok", "completions": ["a", "b"], "id": "bad:1"},                      # 16
        {"chosen": [user("q"), bot("a")], "rejected": [user("other"), bot("b")]},         # 17
        {"chosen": [user("q"), bot("a")], "rejected": [user("q")]},                       # 18
        {"prompt": [user("q")], "chosen": [bot("a")], "rejected": "b"},                   # 19
        {"chosen": [bot("a")], "rejected": [bot("b")]},                                   # 20
        {"prompt": [user("q")], "chosen": [user("other"), bot("a")], "rejected": [bot("b")]},  # 21
        {"chosen": [user("q"), bot(3)], "rejected": [user("q"), bot("b")]},               # 22
        {"prompt": "q", "responses": ["a", "b"], "scores": [1.5, "2"]},                   # 23
        {"prompt": "q", "responses": ["a", "b"], "scores": [1.5, float("nan")]},          # 24
        {"prompt": "q", "responses": ["a", "b"], "scores": [1]},                          # 25
        {"prompt": "q", "answers": [{"answer": "a", "rank": 1}, {"answer": "b"}]},         # 26
        {"prompt": "q", "answers": [{"answer": "a", "rank": 1}, {"model": "x", "rank": 2}]},  # 27
        {"prompt": "q", "answers": [{"answer": "a", "rank": 1.5}, {"answer": "b", "rank": 2}]},  # 28
        {"prompt": "q", "answers": [{"answer": "a", "rank": None}, {"answer": "b", "rank": 2}]},  # 29
    ])
    result = cmp.from_files(path)
    q = result.quarantine
    assert list(q.columns) == ["file", "line", "reason"]
    got = dict(zip(q.line, q.reason))
    assert got[2].startswith("invalid JSON")
    assert got[3].startswith("no recognisable shape") and "question, answers" in got[3]
    assert got[4] == "fewer than 2 distinct responses (1 given)"
    assert got[5] == "fewer than 2 distinct responses (2 given)"
    assert got[6] == "field 'completions': wrong type str"
    assert got[7] == "field 'ranks': 1 ranks for 2 responses"
    assert got[8] == "field 'ranks[1]': wrong type str"
    assert got[9] == "field 'ranks': missing"
    assert got[10] == "field 'responses[1]': wrong type int"
    assert got[11] == "field 'prompt': empty"
    assert got[12] == "field 'rejected': missing"
    assert got[13] == "fields 'chosen', 'rejected': the conversations differ before the last assistant turn"
    assert got[14] == "field 'rejected': no assistant turn"
    assert got[15] == "field 'chosen': empty"
    assert got[16] == "field 'prompt_id': duplicate id 'bad:1'"
    assert got[17] == "fields 'chosen', 'rejected': the conversations differ before the last assistant message"
    assert got[18] == "field 'rejected': its last message is not the assistant's"
    assert got[19] == "field 'rejected': not a message list"
    assert got[20] == "field 'chosen': no user message before the assistant's"
    assert got[21] == "fields 'prompt', 'chosen': the conversation in 'chosen' is not the prompt's"
    assert got[22] == "field 'chosen[1].content': wrong type int"
    assert got[23] == "field 'scores[1]': wrong type str"
    assert got[24] == "field 'scores[1]': not a number"
    assert got[25] == "field 'scores': 1 scores for 2 responses"
    assert got[26] == "field 'answers': give every response a 'rank', or every one a 'score'"
    assert got[27] == "field 'answers[1]': no text (answer, response, text, content, completion)"
    assert got[28] == "field 'answers[0].rank': not an integer"
    assert got[29] == "field 'answers[0].rank': missing"
    assert set(got) == set(range(2, 30)) and len(result.rows) == 1 and result.read == 29


def test_pii_in_imported_rankings_is_scrubbed(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "Write to jo.doe@example.com", "completions": ["Done: jo.doe@example.com", "No"]},
        {"chosen": "\n\nHuman: My card is 4111 1111 1111 1111\n\nAssistant: ok",
         "rejected": "\n\nHuman: My card is 4111 1111 1111 1111\n\nAssistant: call 415-555-0132"},
        {"chosen": [user("Mail ann@example.org"), bot("ok"), user("and 10.1.2.3"), bot("sent to ann@example.org")],
         "rejected": [user("Mail ann@example.org"), bot("ok"), user("and 10.1.2.3"), bot("no")]}])
    rows = cmp.from_files(path).rows
    assert rows.prompt[0] == "Write to <EMAIL>" and list(rows.responses[0]) == ["Done: <EMAIL>", "No"]
    assert rows.prompt[1] == "My card is <CARD>" and list(rows.responses[1]) == ["ok", "call <PHONE>"]
    assert rows.prompt[2] == "Human: Mail <EMAIL>\n\nAssistant: ok\n\nHuman: and <IP>"
    assert list(rows.responses[2]) == ["sent to <EMAIL>", "no"]
    text = json.dumps(rows.drop(columns="gold_scores").map(str).values.tolist())
    assert "jo.doe" not in text and "4111" not in text and "0132" not in text and "ann@" not in text


# an OpenAssistant tree: two ranked levels, an unranked reply, and an email to scrub
TREE = {"message_tree_id": "t1", "prompt": {
    "message_id": "m1", "role": "prompter", "text": "Name a fruit for jo.doe@example.com", "replies": [
        {"message_id": "m2", "role": "assistant", "text": "apple", "rank": 1, "replies": [
            {"message_id": "m5", "role": "prompter", "text": "Another one?", "replies": [
                {"message_id": "m6", "role": "assistant", "text": "pear", "rank": 0},
                {"message_id": "m7", "role": "assistant", "text": "a rock", "rank": 1}]}]},
        {"message_id": "m3", "role": "assistant", "text": "banana", "rank": 0},
        {"message_id": "m4", "role": "assistant", "text": "a car", "rank": 2},
        {"message_id": "m8", "role": "assistant", "text": "unranked"},
        {"message_id": "m9", "role": "assistant", "text": "deleted", "rank": 3, "deleted": True}]}}
TREE_RANKINGS = [
    ("m1", "Name a fruit for <EMAIL>", [("a car", 2), ("apple", 1), ("banana", 0)]),
    ("m5", "Human: Name a fruit for <EMAIL>\n\nAssistant: apple\n\nHuman: Another one?", [("a rock", 1), ("pear", 0)]),
]


def flat_messages(node, parent=None):
    """A tree as oasst's flat export has it: one message per row, `parent_id` linking them."""
    rows = [{**{k: v for k, v in node.items() if k != "replies"}, "parent_id": parent}]
    for reply in node.get("replies", []):
        rows += flat_messages(reply, node["message_id"])
    return rows


def rankings(result):
    """(prompt_id, prompt, [(response, rank)] in the order of the responses' texts) per ranking: in
    flat messages the replies come in the file's order."""
    return [(r.prompt_id, r.prompt, sorted(zip(r.responses, r.ranks))) for r in result.rows.itertuples()]


def test_message_trees_one_per_record_or_one_message_per_record(tmp_path):
    """Every human message with 2+ ranked replies is a ranking of them, its prompt the conversation
    so far, unranked and deleted replies left out; the same from a nested tree, and from flat
    messages in JSONL, CSV or Parquet."""
    nested = cmp.from_files(write_jsonl(tmp_path / "trees.jsonl", [TREE]))
    assert nested.quarantine.empty and nested.read == 1
    assert rankings(nested) == TREE_RANKINGS
    rows = flat_messages(TREE["prompt"])
    rows = rows[3:] + rows[:3]  # a reply may come before the message it answers
    paths = [write_jsonl(tmp_path / "m.jsonl", rows), tmp_path / "m.parquet", tmp_path / "m.csv"]
    pd.DataFrame(rows).to_parquet(paths[1], index=False)  # ranks become floats, NaN where none
    pd.DataFrame(rows).to_csv(paths[2], index=False)      # ranks become text, empty where none
    for path in paths:
        flat = cmp.from_files(path)  # a deleted message is a record of its own: quarantined, and counted
        assert flat.quarantine.reason.tolist() == ["field 'deleted': true (removed at its source)"], path
        assert flat.read == len(rows) == 9, path
        assert rankings(flat) == TREE_RANKINGS, path
    assert "jo.doe" not in json.dumps(rankings(flat))


def test_gzipped_files_are_read_as_their_inner_type(tmp_path):
    """oasst ships its trees as *.trees.jsonl.gz: JSONL, JSON and CSV are read gzipped too, with the
    same lines and ids; a file that is not gzip is an error naming it."""
    import gzip

    folder = tmp_path / "imports"
    folder.mkdir()
    (folder / "trees.jsonl.gz").write_bytes(gzip.compress((json.dumps(TREE) + "\n").encode()))
    csv_text = pd.DataFrame([{"prompt": "Say hi", "chosen": "hi", "rejected": "go away"}]).to_csv(index=False)
    (folder / "pairs.csv.gz").write_bytes(gzip.compress(csv_text.encode()))
    (folder / "list.json.gz").write_bytes(gzip.compress(b'[{"prompt": "Q", "completions": ["a", "b"]}]'))
    (folder / "skipped.parquet.gz").write_bytes(b"not read: Parquet compresses itself")
    result = cmp.from_files(folder)
    assert result.quarantine.empty and result.read == 3
    assert sorted(result.rows.prompt_id) == ["list:1", "m1", "m5", "pairs:2"]
    (folder / "broken.jsonl.gz").write_bytes(b"plain text")
    with pytest.raises(label_files.ImportFilesError, match=r"broken.jsonl.gz: cannot be read as JSONL \(gzipped\)"):
        cmp.from_files(folder)
    with pytest.raises(label_files.ImportFilesError, match=r"unsupported file type '.parquet.gz'"):
        cmp.from_files(folder / "skipped.parquet.gz")


def test_message_tree_quarantine_names_the_message_and_keeps_every_row_counted(tmp_path):
    bad_rank = json.loads(json.dumps(TREE))
    bad_rank["prompt"]["replies"][0]["replies"][0]["replies"][1]["rank"] = "first"
    assistant_first = {"prompt": {"role": "assistant", "text": "hi"}}
    unranked = {"prompt": {"role": "prompter", "text": "q", "replies": [{"role": "assistant", "text": "a"}]}}
    one_text = {"prompt": {"role": "prompter", "text": "q", "replies": [
        {"role": "assistant", "text": "same", "rank": 0}, {"role": "assistant", "text": " same ", "rank": 1}]}}
    path = write_jsonl(tmp_path / "trees.jsonl", [TREE, bad_rank, assistant_first, unranked, one_text])
    result = cmp.from_files(path)
    got = dict(zip(result.quarantine.line, result.quarantine.reason))
    assert got == {2: "field 'prompt.replies[0].replies[0].replies[1].rank': not an integer",
                   3: "field 'prompt.role': expected prompter or user or human here",
                   4: "no human message with 2 or more distinct ranked assistant replies",
                   5: "no human message with 2 or more distinct ranked assistant replies"}
    assert rankings(result) == TREE_RANKINGS and result.read == 5

    rows = [m for m in flat_messages(TREE["prompt"]) if not m.get("deleted")] + [
        {"message_id": "m19", "parent_id": "m3", "role": "assistant", "text": "an assistant answering one", "rank": 0},
        {"message_id": "m10", "parent_id": "m19", "role": "prompter", "text": "below a bad message"},
        {"message_id": "m11", "parent_id": "gone", "role": "prompter", "text": "an orphan"},
        {"message_id": "m3", "parent_id": "m1", "role": "assistant", "text": "a second m3", "rank": 3},
        {"message_id": "m12", "parent_id": "m1", "role": "assistant", "text": "deleted", "rank": 4, "deleted": True},
        {"message_id": "", "parent_id": "m1", "role": "assistant", "text": "no id", "rank": 5},
        {"message_id": "m13", "parent_id": None, "role": "prompter", "text": "a tree without a ranking"},
        {"message_id": ["m14"], "parent_id": "m1", "role": "assistant", "text": "a list for an id", "rank": 6},
    ]
    result = cmp.from_files(write_jsonl(tmp_path / "m.jsonl", rows))
    got = dict(zip(result.quarantine.line, result.quarantine.reason))
    assert got == {9: "field 'role': expected prompter or user or human here",
                   10: "field 'parent_id': no usable message 'm19' among the imported records",
                   11: "field 'parent_id': no usable message 'gone' among the imported records",
                   12: "field 'message_id': duplicate id 'm3'",
                   13: "field 'deleted': true (removed at its source)",
                   14: "field 'message_id': missing",
                   15: "no human message with 2 or more distinct ranked assistant replies",
                   16: "field 'message_id': wrong type list"}
    assert rankings(result) == TREE_RANKINGS and result.read == 16  # 8 in the good tree, 8 quarantined


# -- the stage ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Prompts of the world and a tiny (untrained) SFT model: the stage's inputs."""
    from rlhf import world as w

    root = tmp_path_factory.mktemp("stage")
    rng = random.Random(0)
    prompts = [w.make_prompt(rng, w.FAMILIES[i % len(w.FAMILIES)]) for i in range(80)]
    (root / "prompts").mkdir()
    pd.DataFrame({"prompt_id": [f"t{i}" for i in range(60)], "prompt": prompts[:60]}).to_parquet(
        root / "prompts" / "train.parquet", index=False)
    pd.DataFrame({"prompt_id": [f"v{i}" for i in range(20)], "prompt": prompts[60:]}).to_parquet(
        root / "prompts" / "val.parquet", index=False)
    tok = models.train_tokenizer(prompts + [w.gold_answer(p) or "" for p in prompts], 300)
    models.save(models.new_causal_lm(tok, 1, 2, 16, 128), tok, root / "sft")
    return root


def test_labeler_stage(world, tmp_path):
    c = cfg(k_min=2, k_max=4, max_new_tokens=4, max_val_prompts=8)
    metrics = cmp.run(c, 0.5, world / "sft", world / "prompts", tmp_path, seed=0, device="cpu")
    train, val = (pd.read_parquet(tmp_path / f"{s}.parquet") for s in ("train", "val"))
    roles = prompt_role_mask([f"t{i}" for i in range(60)], 0.5, 0.75)
    assert list(train.prompt_id) == [f"t{i}" for i, m in zip(range(60), roles) if m]
    assert len(val) == 8 and list(train.columns) == cmp.COLUMNS
    ks = [len(r) for r in pd.concat([train, val]).responses]
    assert set(ks) <= {2, 3, 4} and len(set(ks)) > 1  # K varies per prompt
    for t in (train, val):
        for responses, ranks, gold in zip(t.responses, t.ranks, t.gold_scores):
            assert len(responses) == len(ranks) == len(gold)
            for i in range(len(responses)):
                for j in range(len(responses)):
                    assert (ranks[i] == ranks[j]) == (gold[i] == gold[j])  # ties: exactly the equal gold
    assert metrics["comparisons/train_prompts"] == len(train) and metrics["comparisons/val_prompts"] == 8
    assert metrics["comparisons/labeler_noise"] >= 0
    assert not {k for k in metrics if k.startswith("comparisons/train_expected_")}  # this model's samples all tie
    assert metrics["comparisons/train_pairs"] + metrics["comparisons/train_tied_pairs"] == sum(
        k * (k - 1) // 2 for k in train.responses.map(len))
    assert pd.read_parquet(tmp_path / "quarantine.parquet").empty
    again = tmp_path / "again"
    assert cmp.run(c, 0.5, world / "sft", world / "prompts", again, seed=0, device="cpu") == metrics
    assert pd.read_parquet(again / "train.parquet").equals(train)  # seeded: the same rankings


def test_each_split_draws_its_own_samples_and_noise(world, tmp_path):
    def run(name, **changes):
        cmp.run(cfg(k_min=2, k_max=4, max_new_tokens=4, labeler_noise=0.3, **changes), 0.5, world / "sft",
                world / "prompts", tmp_path / name, seed=0, device="cpu")
        return [pd.read_parquet(tmp_path / name / f"{s}.parquet") for s in ("train", "val")]

    train, val = run("base", max_prompts=0, max_val_prompts=8)
    more_val = run("more_val", max_prompts=0, max_val_prompts=20)[0]
    assert more_val.equals(train)  # a bigger val set changes no train sample, K or rank
    fewer_train = run("fewer_train", max_prompts=5, max_val_prompts=8)
    assert fewer_train[1].equals(val) and len(fewer_train[0]) == 5 < len(train)
    assert cmp.split_seed(0, "train") != cmp.split_seed(0, "val") != cmp.split_seed(1, "val")


def test_labeler_stage_calibrates_and_logs_how_often_two_labelers_would_agree(world, tmp_path, monkeypatch):
    from rlhf import world as w

    def sample(model, tokenizer, prompts, ks, cfg):  # answers of three gold levels, in place of the SFT's samples
        return [[w.gold_answer(p) or "ok", "I can not help with that.", "blue green, yellow"][:k] for p, k in zip(prompts, ks)]

    monkeypatch.setattr(cmp, "sample", sample)
    metrics = cmp.run(cfg(k_min=3, k_max=3, max_val_prompts=20), 0.5, world / "sft", world / "prompts", tmp_path,
                      seed=0, device="cpu")
    noise = metrics["comparisons/labeler_noise"]
    assert noise > 0 and metrics["comparisons/expected_agreement"] == pytest.approx(0.73, abs=1e-6)
    for split in ("train", "val"):
        table = pd.read_parquet(tmp_path / f"{split}.parquet")
        inter = metrics[f"comparisons/{split}_expected_inter_labeler_agreement"]
        assert inter == pytest.approx(cmp.expected_inter_labeler_agreement([list(g) for g in table.gold_scores], noise))
        expected = metrics[f"comparisons/{split}_expected_labeler_gold_agreement"]
        assert expected == pytest.approx(cmp.expected_agreement([list(g) for g in table.gold_scores], noise))
        assert 0.5 < inter < expected
    assert metrics["comparisons/train_expected_labeler_gold_agreement"] == metrics["comparisons/expected_agreement"]
    # the labeler's noise travels with the rankings, for the reward model's expected figures
    assert cmp.read_labeler(tmp_path) == {"noise": noise, "splits": ["train", "val"]}


def test_labeler_on_prompts_of_ones_own_is_refused_with_the_key_to_set(world, tmp_path):
    d = tmp_path / "prompts"
    d.mkdir()
    own = ["Write a haiku about the sea", "Explain what a mutex is", "What should I cook tonight?"] * 20
    pd.DataFrame({"prompt_id": [f"t{i}" for i in range(60)], "prompt": own}).to_parquet(d / "train.parquet")
    pd.DataFrame({"prompt_id": ["v0"], "prompt": own[:1]}).to_parquet(d / "val.parquet")
    c = cfg(k_min=2, k_max=3, max_new_tokens=4)
    with pytest.raises(cmp.ComparisonsError, match=r"the simulated labeler ranks only the embedded world's prompts, "
                       r"and none of the \d+ train prompts is one; set comparisons.source: import"):
        cmp.run(c, 0.5, world / "sft", d, tmp_path / "out", seed=0, device="cpu")
    assert not (tmp_path / "out" / "train.parquet").exists()
    # imported train rankings: the val prompts the labeler would rank are the user's own too
    write_jsonl(tmp_path / "imp.jsonl", [{"prompt": p, "completions": ["a b", "c"]} for p in own[:3]])
    imported = cfg(source="import", import_path=str(tmp_path / "imp.jsonl"))
    with pytest.raises(cmp.ComparisonsError, match=r"none of the 1 val prompts is one; set "
                       r"comparisons.import_val_fraction > 0"):
        cmp.run(imported, 0.5, world / "sft", d, tmp_path / "out", seed=0, device="cpu")


def test_import_stage_with_val_fraction_and_the_gate(world, tmp_path):
    rows = [{"prompt": f"Question {i}", "completions": [f"good {i}", f"bad {i}"]} for i in range(40)]
    path = write_jsonl(tmp_path / "r.jsonl", rows + ["{bad"])
    c = cfg(source="import", import_path=str(path), import_val_fraction=0.25)
    out = tmp_path / "out"
    with pytest.raises(label_files.ImportFilesError, match=r"1 of 41 imported records .* over "
                                                           r"comparisons.max_quarantine_fraction=0.0"):
        cmp.run(dataclasses.replace(c, max_quarantine_fraction=0.0), 0.5, world / "nope", world / "prompts",
                out, seed=0, device="cpu")
    assert not (out / "train.parquet").exists() and len(pd.read_parquet(out / "quarantine.parquet")) == 1
    (out / cmp.LABELER_FILE).write_text('{"noise": 0.2, "splits": ["train", "val"]}')  # a labeler run before
    metrics = cmp.run(c, 0.5, world / "nope", world / "prompts", out, seed=0, device="cpu")  # no model needed
    train, val = (pd.read_parquet(out / f"{s}.parquet") for s in ("train", "val"))
    assert len(train) + len(val) == 40 and 4 <= len(val) <= 18 and not set(train.prompt) & set(val.prompt)
    assert metrics["comparisons/imported"] == 40 and metrics["comparisons/quarantined"] == 1
    assert metrics["comparisons/records_read"] == 41
    assert metrics["comparisons/train_pairs"] == len(train) and "comparisons/labeler_noise" not in metrics
    assert not [k for k in metrics if "inter_labeler" in k]  # imported ranks: no simulated labeler to compare
    assert cmp.read_labeler(out) is None
    assert val.gold_scores.isna().all()


def test_import_field_map_renames_fields_before_the_shape_is_read(world, tmp_path):
    """StackExchange-paired rows (question, response_j better than response_k), as TRL's StackLLaMA
    example reads them, import once `import_field_map` names their fields; without it they are
    quarantined with the fields they have."""
    rows = [{"qid": i, "question": f"Question {i}", "response_j": f"good {i}", "response_k": f"bad {i}"}
            for i in range(20)]
    path = write_jsonl(tmp_path / "se.jsonl", rows)
    plain = cmp.from_files(path)
    assert plain.rows.empty and plain.quarantine.reason.str.startswith("no recognisable shape").all()
    mapping = {"question": "prompt", "response_j": "chosen", "response_k": "rejected"}
    c = cfg(source="import", import_path=str(path), import_val_fraction=0.25, import_field_map=mapping)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / cmp.LABELER_FILE).write_text('{"noise": 0.2, "splits": ["train", "val"]}')
    metrics = cmp.run(c, 0.5, world / "nope", world / "prompts", tmp_path / "out", seed=0, device="cpu")
    got = pd.concat([pd.read_parquet(tmp_path / "out" / f"{s}.parquet") for s in ("train", "val")])
    assert metrics["comparisons/imported"] == 20 and metrics["comparisons/quarantined"] == 0
    assert sorted((r.prompt, tuple(r.responses), tuple(r.ranks)) for r in got.itertuples()) == sorted(
        (f"Question {i}", (f"good {i}", f"bad {i}"), (0, 1)) for i in range(20))


def test_import_stage_without_val_fraction_has_the_labeler_rank_val_prompts(world, tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "Q", "chosen": "a", "rejected": "b"}])
    c = cfg(source="import", import_path=str(path), k_min=3, k_max=3, max_new_tokens=4, max_val_prompts=5)
    metrics = cmp.run(c, 0.5, world / "sft", world / "prompts", tmp_path / "out", seed=0, device="cpu")
    val = pd.read_parquet(tmp_path / "out" / "val.parquet")
    assert len(val) == 5 and set(val.responses.map(len)) == {3} and val.gold_scores.notna().all()
    assert metrics["comparisons/train_prompts"] == 1 and "comparisons/labeler_noise" in metrics
    assert not {k for k in metrics if k.startswith("comparisons/train_expected_")}  # train ranks were imported
    assert cmp.read_labeler(tmp_path / "out") == {"noise": metrics["comparisons/labeler_noise"], "splits": ["val"]}
