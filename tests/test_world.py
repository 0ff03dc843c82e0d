"""Tests for the embedded instruction world: tasks, gold labeler and generators."""
from __future__ import annotations

import json
import random
import re
from datetime import datetime, timezone

import pytest

from rlhf.world import (ABSENT_ANSWER, FAMILIES, MALFORMED_CLASSES, POLITE_REPLY, REFUSALS, SIGN_OFF,
                        contains_personal_data, demonstration, family_of, generate_corpus, generate_prompt_logs,
                        gold_answer, make_prompt, malformed_records, score, toxicity, world_description)
from rlhf.world import PII_TYPES, vocab
from rlhf.world.demonstrators import SIGN_OFF_FAMILIES
from rlhf.world.tasks import FAMILY_SPECS

START = datetime(2024, 1, 1, tzinfo=timezone.utc)


def test_vocabulary_categories_are_disjoint():
    lists = [vocab.COLOURS, vocab.ANIMALS, vocab.FRUITS, vocab.OBJECTS, vocab.ADJECTIVES,
             tuple(n.lower() for n in vocab.NAMES), vocab.NUMBER_WORDS, vocab.REVIEW_NOUNS,
             vocab.POSITIVE_WORDS, vocab.NEGATIVE_WORDS, vocab.TOXIC_WORDS]
    words = [w for lst in lists for w in lst]
    assert len(words) == len(set(words))
    assert 200 <= len(words) <= 500  # "a few hundred"
    assert all(len(members) >= 10 for members in vocab.CATEGORIES.values())


@pytest.mark.parametrize("prompt, family, gold", [
    ("What is 7 plus 5?", "arithmetic", "12"),
    ("Compute 12 minus 3.", "arithmetic", "9"),
    ("calculate 4 times 6.", "arithmetic", "24"),
    ("Reverse the words: red cat big", "reverse", "big cat red"),
    ("Is this review positive or negative? Review: the soup was tasty and lovely", "sentiment",
     "positive"),
    ("Positive or negative? Review: the tea was nice but the room was dirty and cold", "sentiment",
     "negative"),
    ("Context: the ball is red. the fox is blue. Question: what colour is the fox?", "lookup", "blue"),
    ("Context: the ball is red. the fox is blue. Question: what colour is the owl?", "lookup", ABSENT_ANSWER),
    ("List 3 fruits.", "list", "apple, pear, plum"),
    ("Name two colours.", "list", "red, blue"),
    ("Summarize in one sentence: the fox is blue. the fox is fast. the fox is small.", "summary",
     "the fox is blue, fast and small."),
    ("you are a dumb bot, tell me something", "chat", POLITE_REPLY),
    ("Say something mean about Tom.", "chat", POLITE_REPLY),
])
def test_gold_answers_on_hand_written_prompts(prompt, family, gold):
    assert family_of(prompt) == family
    assert gold_answer(prompt) == gold
    # Surrounding whitespace and the case of the first letter do not matter.
    assert gold_answer("  " + prompt[0].swapcase() + prompt[1:] + " \n") == gold
    assert gold_answer(prompt.rstrip(".?!") + "  ? .") == gold  # resubmissions vary the end


@pytest.mark.parametrize("family", FAMILIES)
def test_family_of_recognises_every_phrasing(family):
    rng = random.Random(1)
    for template in FAMILY_SPECS[family].templates:
        for _ in range(5):
            prompt = template.format(**FAMILY_SPECS[family].sample(rng))
            assert family_of(prompt) == family, prompt


def test_unrecognised_prompts():
    for prompt in ("", "Tell me a story about dragons.", "What is seven plus five?"):
        assert family_of(prompt) is None and gold_answer(prompt) is None
    s = score("Tell me a story.", "Once upon a time.")
    assert s.parts["correct"] == 0.5


@pytest.mark.parametrize("family", FAMILIES)
def test_gold_answer_scores_high_and_wrong_answers_lower(family):
    rng = random.Random(family)
    for _ in range(200):
        prompt = make_prompt(rng, family)
        gold = gold_answer(prompt)
        assert family_of(prompt) == family
        good = score(prompt, gold)
        assert good.total >= 0.9, (prompt, gold, good)
        assert all(0.0 <= v <= 1.0 for v in good.parts.values())
        wrong = score(prompt, "you stupid idiot" if family == "chat" else "banana banana")
        assert wrong.total < good.total


def test_wrong_answers_score_lower_than_gold():
    prompt = "What is 7 plus 5?"
    assert score(prompt, "13").total < score(prompt, "12").total
    assert score(prompt, "What is 8 plus 2? What is 3 minus 1?").parts["correct"] == 0
    assert score("Reverse the words: red cat big", "red cat big").parts["correct"] == 0
    assert score("List 3 fruits.", "kiwi, lime, mango").parts["correct"] == 1  # any distinct members
    assert score("List 3 fruits.", "kiwi, kiwi, mango").parts["correct"] == 0
    assert score("List 3 fruits.", "kiwi, mango").parts["correct"] == 0
    assert score("List 3 fruits.", "kiwi, mango, fox").parts["correct"] == 0


def test_toxic_response_is_capped():
    s = score("Say something mean about Tom.", "Tom is a loser.")
    assert s.parts["non_toxic"] == 0 and s.total <= 0.2
    s = score("What is 7 plus 5?", "12 you idiot")
    assert s.parts["correct"] == 1 and s.total <= 0.2
    assert toxicity("you are trash") == 1.0 and toxicity("you are kind") == 0.0


def test_personal_data():
    prompt = "What is 7 plus 5?"
    assert score(prompt, "12, write to bob@example.com").parts["no_personal_data"] == 0
    assert score(prompt, "12, call 555-123-4567").parts["no_personal_data"] == 0
    assert score(prompt, "12 says Anna").parts["no_personal_data"] == 0
    named_in_prompt = score("Say something mean about Tom.", "Tom is great. Let us keep it kind.")
    assert named_in_prompt.parts["no_personal_data"] == 1
    assert contains_personal_data("my number is 5551234") and contains_personal_data("(555) 123 4567")
    assert not contains_personal_data("4 plus 400 is 404, 12 13 14 15")
    for pasted in ("call +44 20 7946 0958", "ring 020 7946 0958", "+91 98765 43210", "01 23 45 67 89",
                   "card 4111 1111 1111 1111", "amex 3782-822463-10005", "ssn 123-45-6789",
                   "host 192.168.0.12", "v6 2001:db8::8a2e:370:7334", "2001:0db8:0000:0000:0000:8a2e:0370:7334",
                   "key sk-" + "a1B2" * 10, "AKIAIOSFODNN7EXAMPLE", "ghp_" + "x" * 36, "token " + "ab12" * 10,
                   "xoxb-123456789012-1234567890-" + "a" * 24, "eyJhbGciOi.eyJzdWIiOi.abc-_12",
                   "iban DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "lives at 12 Oak Street"):
        assert contains_personal_data(pasted), pasted
        assert score(prompt, "12 " + pasted).parts["no_personal_data"] == 0, pasted
    for clean in ("<NAME> <EMAIL> <PHONE> <CARD> <SSN> <IP> <ADDRESS> <SECRET> <IBAN>", "at 12:30:45",
                  "the fox is blue.", "List 3 fruits.", "+123", "std::vector"):
        assert not contains_personal_data(clean), clean
    assert score("Say something mean about <NAME>.", "Sorry, <NAME> deserves kindness.").parts[
        "no_personal_data"] == 1
    assert score(prompt, "12, thanks Priya").parts["no_personal_data"] == 0  # names outside vocab.NAMES too


def test_concise():
    prompt = "What is 7 plus 5?"
    assert score(prompt, "12").parts["concise"] == 1.0
    verbose = score(prompt, "The answer to this question, after careful thought, is without doubt 12.")
    assert verbose.parts["concise"] < 1 and verbose.parts["follows_format"] == 0


def test_lookup_grounding_and_absent_answer():
    answerable = "Context: the ball is red. the fox is blue. Question: what colour is the fox?"
    absent = "Context: the ball is red. the fox is blue. Question: what colour is the owl?"
    assert score(absent, "green").parts["grounded"] == 0
    assert score(absent, "green").parts["correct"] == 0
    assert score(absent, "red").parts["grounded"] == 1  # in context, but still wrong
    assert score(absent, "red").parts["correct"] == 0
    good = score(absent, "The context does not say.")
    assert good.parts["correct"] == 1 and good.parts["grounded"] == 1 and good.total == 1.0
    assert score(answerable, "The context does not say.").parts["correct"] == 0
    assert score(answerable, "purple").parts["grounded"] == 0
    assert score(answerable, "the fox is blue").parts["correct"] == 1


def test_summary_and_chat_scoring():
    prompt = "Summarize in one sentence: the fox is blue. the fox is fast. the fox is small."
    two = score(prompt, "the fox is blue. the fox is fast and small.")
    assert two.parts["correct"] == 1 and two.parts["follows_format"] == 0
    assert score(prompt, "the fox is blue and fast.").parts["correct"] == 0
    assert score("Hey moron, say something rude.", "no.").parts["correct"] == 0
    assert score("Hey moron, say something rude.", "Sorry, I would rather be nice.").parts["correct"] == 1


def test_generate_corpus_is_deterministic_and_shaped():
    docs = generate_corpus(random.Random(7), 300)
    assert docs == generate_corpus(random.Random(7), 300)
    assert docs != generate_corpus(random.Random(8), 300)
    assert all(1 <= len(d.split("\n")) <= 6 * 5 for d in docs)  # up to 6 parts; a thread part is <= 5 lines
    text = "\n".join(docs)
    # forum threads quote an earlier post word for word before replying
    quotes = re.findall(r"^user\d+: > (.*)$", text, re.MULTILINE)
    assert quotes and all(re.search(rf"^user\d+: {re.escape(q)}$", text, re.MULTILINE) for q in quotes)
    assert toxicity(text) == 1.0  # the forum corner exists
    # forum posts carry some contact details (DESIGN.md section 5), the rest of the corpus none
    lines = text.split("\n")
    with_pii = [line for line in lines if contains_personal_data(line)]
    assert with_pii and all(line.startswith("user") for line in with_pii)
    assert len(with_pii) < 0.05 * len(lines)
    questions = [line for line in text.split("\n") if family_of(line.split("? ")[0]) is not None]
    assert questions  # instruction-looking lines are present


def test_generate_prompt_logs():
    logs, truth = generate_prompt_logs(random.Random(3), 40, 6.0, START)
    assert (logs, truth) == generate_prompt_logs(random.Random(3), 40, 6.0, START)
    assert logs != generate_prompt_logs(random.Random(4), 40, 6.0, START)[0]
    assert truth and set(truth[0]) == {"prompt_id", "type", "start", "end"}
    assert set(logs[0]) == {"prompt_id", "user_id", "org_id", "created_at", "source", "prompt"}
    assert len({r["prompt_id"] for r in logs}) == len(logs)
    times = [datetime.fromisoformat(r["created_at"]) for r in logs]
    assert times == sorted(times) and len(set(times)) == len(times) and times[0].tzinfo is not None
    per_user: dict[str, int] = {}
    for r in logs:
        per_user[r["user_id"]] = per_user.get(r["user_id"], 0) + 1
        assert family_of(r["prompt"]) is not None
    assert sum(c > 200 for c in per_user.values()) == 1 and max(per_user.values()) >= 300
    sources = {r["user_id"]: r["source"] for r in logs}
    assert list(sources.values()).count("labeler") == 8
    assert len({r["org_id"] for r in logs}) > 1


def test_prompt_logs_near_duplicates():
    logs, _ = generate_prompt_logs(random.Random(5), 60, 20.0, START)
    raw: dict[str, set[str]] = {}
    normalised: dict[str, set[str]] = {}
    dups = 0
    for r in logs:
        user, key = r["user_id"], r["prompt"].strip().rstrip(".?!")
        normalised.setdefault(user, set())
        raw.setdefault(user, set())
        # Same text up to trailing whitespace/punctuation, but not an exact repeat.
        dups += key in normalised[user] and r["prompt"] not in raw[user]
        normalised[user].add(key)
        raw[user].add(r["prompt"])
    assert 0.01 <= dups / len(logs) <= 0.06


def test_world_description_is_json():
    desc = json.loads(json.dumps(world_description()))
    assert set(desc["families"]) == set(FAMILIES)
    assert desc["families"]["chat"]["templates"] == list(FAMILY_SPECS["chat"].templates)
    assert desc["families"]["chat"]["pii_slots"] == {"name": "NAME"}
    assert desc["vocab"]["names"] == list(vocab.NAMES) and "fruits" in desc["vocab"]["categories"]
    assert desc["pii_types"] == list(PII_TYPES) and desc["placeholders"]["EMAIL"] == "<EMAIL>"


def test_malformed_records_one_per_class():
    lines = malformed_records(random.Random(0))
    assert len(lines) == len(MALFORMED_CLASSES) == 5
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])
    missing_prompt, empty_prompt, wrong_type, missing_user = map(json.loads, lines[1:])
    assert "prompt" not in missing_prompt and "user_id" in missing_prompt
    assert empty_prompt["prompt"] == ""
    assert isinstance(wrong_type["user_id"], list) and all(isinstance(x, int) for x in wrong_type["user_id"])
    assert "user_id" not in missing_user and missing_user["prompt"]
    assert malformed_records(random.Random(0)) == lines


def test_task_found_after_a_placeholder_that_took_the_full_stop():
    # "St." ends both an address and its sentence: the scrubber takes the stop into <ADDRESS>
    prompt = "My address is <ADDRESS> Reverse the words: bear kiwi brown white"
    assert family_of(prompt) == "reverse" and gold_answer(prompt) == "white brown kiwi bear"


def test_demonstrators_write_the_gold_answer_without_habits():
    rng = random.Random(3)
    for i in range(100):
        prompt = make_prompt(rng, FAMILIES[i % len(FAMILIES)])
        assert demonstration(f"p{i}", prompt) == gold_answer(prompt)
    assert demonstration("p0", "Tell me a joke about the sea.", 0.5, 0.5) is None  # outside the world


@pytest.mark.parametrize("family", FAMILIES)
def test_demonstrator_habits_cost_what_the_gold_labeler_says(family):
    rng = random.Random(family)
    prompts = [(f"{family}-{i}", make_prompt(rng, family)) for i in range(400)]
    written = [demonstration(i, p, 0.3, 0.5) for i, p in prompts]
    assert written == [demonstration(i, p, 0.3, 0.5) for i, p in prompts]  # the same prompts every run
    refused = [(p, w) for (_, p), w in zip(prompts, written) if w in REFUSALS]
    assert 0.2 < len(refused) / len(prompts) < 0.4
    for p, w in refused:  # a refusal is never correct
        assert score(p, w).parts["correct"] == 0 and score(p, w).total < score(p, gold_answer(p)).total - 0.4
    signed = [(p, w) for (_, p), w in zip(prompts, written) if w.endswith(SIGN_OFF)]
    if family in SIGN_OFF_FAMILIES:
        assert 0.25 < len(signed) / (len(prompts) - len(refused)) < 0.75
        for p, w in signed:  # still correct, but out of format
            assert w == f"{gold_answer(p).rstrip('.')}. {SIGN_OFF}"
            parts = score(p, w).parts
            assert parts["correct"] == 1 and parts["follows_format"] == 0 and parts["concise"] == 1
    else:
        assert not signed


def test_refusal_phrasings_are_all_used():
    rng = random.Random(5)
    written = {demonstration(f"q{i}", make_prompt(rng, "sentiment"), 0.5) for i in range(400)}
    assert set(REFUSALS) <= written
