"""K-way comparisons: K responses per RM prompt ranked by the simulated labeler, or imported rankings.

The labeler (DESIGN.md section 5) samples K responses per prompt from the SFT model at the
configured temperature, K drawn per prompt in [k_min, k_max], and ranks them by gold score plus
Gaussian noise. The noise is calibrated so that the labeler agrees with the gold ordering on about
`target_agreement` of the pairs (the paper's inter-annotator agreement, 0.73).

Ties, decided here once: responses with equal gold scores tie (identical texts always do). The
labeler's noise is drawn once per distinct gold score of a prompt, so it reorders the quality levels
but never splits one: a tie gives no pair to the loss and is left out of every agreement figure.
Why not break gold ties by noise: gold scores come in few levels (0.4 wrong format, 0.5 wrong
answer, 1.0 correct), so many responses of a prompt share one; on the default pipeline more than
half of the pairs of different texts would then be ordered by a coin flip, noise the RM cannot
learn, and an RM that ordered every other pair as gold does would still score below 0.6 against
the labeler. Ranks are competition ranks: 0 is the best, tied responses share the best rank among them.

Imported rankings (`comparisons.source: import`, any mix of files under `comparisons.import_path`):
- ranked lists: `prompt` and `completions` ordered best to worst, or `prompt`, `responses` and
  `ranks` (integers, lower is better, equal ranks are ties) or `scores` (numbers, higher is better,
  as ratings come: equal scores tie), or `prompt` and `answers` (or `responses`) as objects with
  their text and a `rank` or a `score` each (Nectar);
- chosen/rejected pairs: `prompt`, `chosen`, `rejected` (K = 2);
- Human/Assistant transcripts (Anthropic HH): `chosen` and `rejected` each a whole
  "\\n\\nHuman: ... \\n\\nAssistant: ..." conversation that they share up to the last assistant
  turn; the prompt is that shared conversation (its human turn alone when there is just one), the
  responses are the two last assistant turns.
- message lists (TRL's conversational preference records, UltraFeedback): `prompt` a message list
  and `chosen`, `rejected` the assistant's message each, or `chosen` and `rejected` whole
  conversations that share all but their last assistant message; OpenAI role/content or ShareGPT
  from/value, system messages left out, the prompt as for transcripts.
- message trees (OpenAssistant), one per record or one message per record (`rlhf.label_files`):
  every human message with 2 or more ranked assistant replies is one ranking of those replies
  (`rank`, 0 the best; unranked replies left out), its prompt the conversation up to it.
In CSV, list fields are JSON lists in a cell. Text is normalised and PII-scrubbed, bad records are
quarantined with file, line and reason (see `rlhf.label_files`).
"""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rlhf import jsontext, label_files, messages
from rlhf.config import ComparisonsConfig
from rlhf.hashing import prompt_role_mask, unit_hash
from rlhf.train import set_seed

COLUMNS = ["prompt_id", "prompt", "responses", "ranks", "gold_scores"]
SCHEMA = pa.schema([("prompt_id", pa.string()), ("prompt", pa.string()), ("responses", pa.list_(pa.string())),
                    ("ranks", pa.list_(pa.int64())), ("gold_scores", pa.list_(pa.float64()))])
SPLITS = ("train", "val")
VAL_SALT = "comparisons"  # salt of the prompt hash that sends an imported ranking to val
LABELER_FILE = "labeler.json"  # beside the parquets: the simulated labeler's noise and the splits it ranked
_ASSISTANT_MARK = "\n\nAssistant:"
_TOO_FEW = "fewer than 2 distinct responses"
TEXT_KEYS = ("answer", "response", "text", "content", "completion")  # a response given as an object


class ComparisonsError(label_files.ImportFilesError):
    """Comparisons the stage cannot build (as opposed to bad records, which are quarantined)."""


# -- ranks and agreement ----------------------------------------------------------------------------

def competition_ranks(values: list[float], higher_is_better: bool = True) -> list[int]:
    """0 for the best; equal values share a rank (the number of values strictly better)."""
    sign = 1 if higher_is_better else -1
    return [sum(sign * w > sign * v for w in values) for v in values]


def gold_agreement(gold: list[list[float]], ranks: list[list[int]]) -> tuple[int, int]:
    """(agreeing, total) over the pairs with distinct gold scores: a pair agrees when the ranking
    puts the higher-gold response strictly above the other."""
    agree = total = 0
    for g, r in zip(gold, ranks):
        for i in range(len(g)):
            for j in range(i + 1, len(g)):
                if g[i] != g[j]:
                    total += 1
                    agree += r[i] != r[j] and (g[i] > g[j]) == (r[i] < r[j])
    return agree, total


def gold_pairs(gold: list[float]):
    """(better, worse, gap) for every pair of one prompt's responses with distinct gold scores."""
    for i in range(len(gold)):
        for j in range(len(gold)):
            if gold[i] > gold[j]:
                yield i, j, gold[i] - gold[j]


def keep_probability(gap: float, noise: float) -> float:
    """The probability that the labeler keeps the gold order of two responses whose gold scores
    differ by `gap` > 0: each gets its own N(0, noise^2) draw, so Phi(gap / (noise * sqrt 2))."""
    return 1.0 if noise == 0 else 0.5 * (1 + math.erf(gap / (2 * noise)))


def _keep_probabilities(gold: list[list[float]], noise: float) -> list[float]:
    return [keep_probability(gap, noise) for g in gold for _, _, gap in gold_pairs(g)]


def expected_agreement(gold: list[list[float]], noise: float) -> float | None:
    """The labeler's expected agreement with gold at noise std `noise`, exactly: the mean of
    `keep_probability` over the pairs with distinct gold scores. None when there is no such pair."""
    keeps = _keep_probabilities(gold, noise)
    return sum(keeps) / len(keeps) if keeps else None


def ranker_pairs(gold: list[float], scores: list[float], noise: float):
    """(keep, expected) for every pair of one prompt's responses with distinct gold scores: the
    labeler's probability of keeping the gold order, and how often a ranker that gives the responses
    `scores` is expected to order the pair as the labeler does (keep when it follows gold, 1 - keep
    when it inverts it, 0 on a tie, as `rm/val_accuracy` counts a tie against a ranked pair)."""
    for i, j, gap in gold_pairs(gold):
        keep = keep_probability(gap, noise)
        yield keep, keep if scores[i] > scores[j] else 1 - keep if scores[i] < scores[j] else 0.0


def expected_ranker_agreement(gold: list[list[float]], scores: list[list[float]], noise: float) -> float | None:
    """A ranker's agreement with the labeler at noise std `noise`, expected over the labeler's draws:
    the mean of `ranker_pairs`' expectation over the pairs with distinct gold scores. A ranker that
    orders every pair as gold does expects `expected_agreement`. None when there is no such pair."""
    got = [e for g, s in zip(gold, scores) for _, e in ranker_pairs(g, s, noise)]
    return sum(got) / len(got) if got else None


def expected_inter_labeler_agreement(gold: list[list[float]], noise: float) -> float | None:
    """How often two labelers at noise std `noise`, each with its own draws, expect to order a pair
    the same way: the mean of k^2 + (1 - k)^2 over the pairs with distinct gold scores, k each pair's
    `keep_probability` (both keep the gold order, or both invert it). The simulated counterpart of
    the paper's inter-annotator agreement (labelers agree with each other on 72.6 +- 1.5%), which
    is lower than either labeler's agreement with gold. None when there is no such pair."""
    keeps = _keep_probabilities(gold, noise)
    return sum(k * k + (1 - k) * (1 - k) for k in keeps) / len(keeps) if keeps else None


def calibrate_noise(gold: list[list[float]], target: float, iters: int = 60) -> float:
    """The noise std at which the expected agreement with gold is `target`, by bisection (the
    agreement falls from 1 at zero noise towards 0.5). Zero when no pair has distinct gold."""
    if expected_agreement(gold, 1.0) is None or target >= 1.0:
        return 0.0
    lo, hi = 0.0, 1.0
    while expected_agreement(gold, hi) > target:
        hi *= 2
    for _ in range(iters):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_agreement(gold, mid) > target else (lo, mid)
    return (lo + hi) / 2


def label(gold: list[float], noise: float, rng: random.Random) -> list[int]:
    """The labeler's ranks: gold plus Gaussian noise, one draw per distinct gold score (equal gold
    scores, identical texts among them, tie)."""
    drawn: dict[float, float] = {}
    for g in gold:
        if g not in drawn:
            drawn[g] = g + (rng.gauss(0.0, noise) if noise > 0 else 0.0)
    return competition_ranks([drawn[g] for g in gold])


def pair_counts(table: pd.DataFrame) -> dict[str, int]:
    """Ranked pairs (what the loss sees), tied pairs, tied pairs of identical texts, and prompts
    that give no pair at all (every response tied)."""
    ranked = tied = identical = no_pairs = 0
    for ranks, responses in zip(table.ranks, table.responses):
        pairs = [(i, j) for i in range(len(ranks)) for j in range(i + 1, len(ranks))]
        n_ranked = sum(ranks[i] != ranks[j] for i, j in pairs)
        ranked += n_ranked
        tied += len(pairs) - n_ranked
        identical += sum(responses[i] == responses[j] for i, j in pairs)
        no_pairs += n_ranked == 0
    return {"pairs": ranked, "tied_pairs": tied, "identical_pairs": identical, "prompts_without_pairs": no_pairs}


# -- the simulated labeler --------------------------------------------------------------------------

def rm_prompts(prompts: pd.DataFrame, cfg: ComparisonsConfig, sft_share: float, seed: int) -> pd.DataFrame:
    """The train prompts whose role is RM: prompt_id hashes into [sft_share, sft_share + share)."""
    if sft_share + cfg.prompt_share > 1 + 1e-9:
        raise ComparisonsError(f"demonstrations.prompt_share ({sft_share}) + comparisons.prompt_share "
                               f"({cfg.prompt_share}) is over 1")
    picked = prompts[prompt_role_mask(list(prompts.prompt_id), sft_share, sft_share + cfg.prompt_share)]
    if cfg.max_prompts and len(picked) > cfg.max_prompts:
        picked = picked.sample(n=cfg.max_prompts, random_state=seed).sort_index()
    return picked.reset_index(drop=True)


def sample(model, tokenizer, prompts: list[str], ks: list[int], cfg: ComparisonsConfig) -> list[list[str]]:
    """ks[i] responses to prompts[i], sampled from `model`; prompts sharing a K are generated together,
    in order of length, so that batches carry little padding."""
    from rlhf import models

    out: list[list[str]] = [[] for _ in prompts]
    for k in sorted(set(ks)):
        idx = sorted((i for i, x in enumerate(ks) if x == k), key=lambda i: len(prompts[i]))
        flat = models.generate(model, tokenizer, [prompts[i] for i in idx], cfg.max_new_tokens,
                               temperature=cfg.temperature, num_return_sequences=k)
        for n, i in enumerate(idx):
            out[i] = flat[n * k:(n + 1) * k]
    return out


def sample_and_score(model, tokenizer, prompts: pd.DataFrame, cfg: ComparisonsConfig,
                     rng: random.Random) -> pd.DataFrame:
    """K samples per prompt (K drawn per prompt) with their gold scores; ranks not yet set."""
    from rlhf.evaluation import gold_scores

    texts = list(prompts.prompt)
    ks = [rng.randint(cfg.k_min, cfg.k_max) for _ in texts]
    responses = sample(model, tokenizer, texts, ks, cfg)
    gold = [gold_scores([p] * len(rs), rs) for p, rs in zip(texts, responses)]
    return pd.DataFrame({"prompt_id": list(prompts.prompt_id), "prompt": texts, "responses": responses,
                         "ranks": [None] * len(texts), "gold_scores": gold})


def split_seed(seed: int, split: str) -> int:
    """The seed of one split's K draws, SFT samples and labeler noise: each split draws from its
    own stream, so that the size of one (`max_prompts`, `max_val_prompts`) changes nothing in the other."""
    return int(unit_hash(split, f"comparisons:{seed}") * 2**31)


def rank_all(table: pd.DataFrame, noise: float, rng: random.Random) -> pd.DataFrame:
    ranks = [label(g, noise, rng) for g in table.gold_scores]
    return table.assign(ranks=ranks)


# -- imported rankings ------------------------------------------------------------------------------

def _as_list(value: Any, name: str) -> tuple[list | None, str | None]:
    """A list field; in CSV a JSON list in a cell."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        value, reason = jsontext.loads_cell(value, name, "a JSON list")
        if reason:
            return None, reason
    if value is None:
        return None, f"field '{name}': missing"
    if not isinstance(value, (list, tuple)):
        return None, f"field '{name}': wrong type {type(value).__name__}"
    return list(value), None


def _split_last_turn(text: str) -> tuple[str, str] | None:
    """(the conversation before the last assistant turn, that turn's text)."""
    cut = text.rfind(_ASSISTANT_MARK)
    if cut < 0:
        return None
    return text[:cut], text[cut + len(_ASSISTANT_MARK):]


def _conversation_prompt(prefix: str) -> list[tuple[str, str]]:
    """The prompt's turns of a Human/Assistant transcript before its last assistant turn."""
    parts = re.split(r"(?:^|\n\n)(Human|Assistant):", prefix)
    turns = ([("", parts[0])] if parts[0].strip() else []) + list(zip(parts[1::2], parts[2::2]))
    return label_files.prompt_turns(turns)


def _clean_prompt(turns: list[tuple[str, str]] | Any, name: str) -> tuple[str | None, str | None]:
    """The prompt text: each turn of a conversation cleaned on its own (the PII scrubber must not
    read a role marker as a name), joined as a transcript."""
    if not isinstance(turns, list):
        return label_files.clean_text(turns, name)
    out = []
    for role, text in turns:
        clean, reason = label_files.clean_text(text, name)
        if clean is None:
            return None, reason
        out.append(f"{role}: {clean}" if role else clean)
    return "\n\n".join(out), None


def _transcript_pair(rec: dict) -> tuple[tuple | None, str | None]:
    """(prompt, [chosen, rejected]) of two transcripts that share all but the last assistant turn."""
    chosen, rejected = _split_last_turn(rec["chosen"]), _split_last_turn(rec["rejected"])
    if chosen is None:
        return None, "field 'chosen': no assistant turn"
    if rejected is None:
        return None, "field 'rejected': no assistant turn"
    if chosen[0].strip() != rejected[0].strip():
        return None, "fields 'chosen', 'rejected': the conversations differ before the last assistant turn"
    return (_conversation_prompt(chosen[0]), "chosen", [chosen[1], rejected[1]], ["chosen", "rejected"],
            [0, 1]), None


def _message_pair(rec: dict) -> tuple[tuple | None, str | None]:
    """(prompt, [chosen, rejected]) of message lists, as TRL's conversational preference records
    have them: `prompt` a message list and `chosen`, `rejected` the assistant's message each (alone,
    or after the prompt's messages again); or, with the prompt implicit (a `prompt` that is text is
    then only a copy of it, as in UltraFeedback), `chosen` and `rejected` whole conversations that
    share all but their last assistant message."""
    given = messages.is_list(rec.get("prompt"))
    sides = []
    for name in ("chosen", "rejected"):
        turns, reason = messages.read(rec.get(name), name)
        if turns is None:
            return None, reason if rec.get(name) is not None else f"field '{name}': missing"
        if not turns or turns[-1].role != "assistant":
            return None, f"field '{name}': its last message is not the assistant's"
        sides.append(turns)

    def said(turns: list) -> list[tuple]:
        return [(m.role, m.content) for m in turns]

    if given:
        before, reason = messages.read(rec["prompt"], "prompt")
        if before is None:
            return None, reason
        for name, side in zip(("chosen", "rejected"), sides):  # the prompt may be repeated before the answer
            if len(side) > 1 and said(side[:-1]) != said(before):
                return None, f"fields 'prompt', '{name}': the conversation in '{name}' is not the prompt's"
    else:
        before = sides[0][:-1]
        if said(before) != said(sides[1][:-1]):
            return None, "fields 'chosen', 'rejected': the conversations differ before the last assistant message"
    if not before or before[-1].role != "user":
        return None, f"field '{'prompt' if given else 'chosen'}': no user message before the assistant's"
    turns = label_files.prompt_turns([("Human" if m.role == "user" else "Assistant", m.content) for m in before])
    return (turns, "prompt" if given else "chosen", [side[-1].content for side in sides],
            [f"{name}[{side[-1].index}].{side[-1].key}" for name, side in zip(("chosen", "rejected"), sides)],
            [0, 1]), None


def _score(value: Any, name: str) -> tuple[float | None, str | None]:
    """A score (higher is better), or the reason `value` is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None, f"field '{name}': wrong type {type(value).__name__}"
    if isinstance(value, float) and math.isnan(value):
        return None, f"field '{name}': not a number"
    return value, None


def _ranked_objects(items: list, key: str) -> tuple[tuple | None, str | None]:
    """(texts, their fields, ranks) of responses given as objects, each with its text (the first of
    `TEXT_KEYS` it has) and a `rank` (lower is better: Nectar's answers, ranked 1 to 7) or a `score`
    (higher is better); or a reason."""
    kind = next((k for k in ("rank", "score") if all(k in item for item in items)), None)
    if kind is None:
        return None, f"field '{key}': give every response a 'rank', or every one a 'score'"
    texts, fields, values = [], [], []
    for i, item in enumerate(items):
        text_key = next((k for k in TEXT_KEYS if k in item), None)
        if text_key is None:
            return None, f"field '{key}[{i}]': no text ({', '.join(TEXT_KEYS)})"
        if kind == "rank":
            value, reason = label_files.parse_rank(item["rank"], f"{key}[{i}].")
            reason = reason or (f"field '{key}[{i}].rank': missing" if value is None else None)
        else:
            value, reason = _score(item["score"], f"{key}[{i}].score")
        if reason:
            return None, reason
        texts.append(item[text_key])
        fields.append(f"{key}[{i}].{text_key}")
        values.append(value)
    return (texts, fields, values if kind == "rank" else competition_ranks(values)), None


def _shape(rec: dict) -> tuple[tuple | None, str | None]:
    """(prompt, its field, responses, their fields, ranks) in the record's shape, or a reason."""
    # a field is there when it has a value: mixed shapes in one CSV or Parquet leave the others empty
    if messages.is_list(rec.get("chosen")) or messages.is_list(rec.get("rejected")):
        return _message_pair(rec)
    if label_files.is_transcript(rec.get("chosen")) and label_files.is_transcript(rec.get("rejected")):
        return _transcript_pair(rec)
    prompt = rec.get("prompt")
    if label_files.is_transcript(prompt):  # "\n\nHuman: ...\n\nAssistant:", as HH and Nectar give it
        prompt = _conversation_prompt(prompt.rstrip().removesuffix(_ASSISTANT_MARK.strip()))
    if rec.get("chosen") is not None or rec.get("rejected") is not None:
        return (prompt, "prompt", [rec.get("chosen"), rec.get("rejected")], ["chosen", "rejected"], [0, 1]), None
    for key in ("answers", "responses", "completions"):  # responses as objects with their rank or score
        if messages.is_list(rec.get(key)):
            got, reason = _ranked_objects(_as_list(rec[key], key)[0], key)
            return ((prompt, "prompt", *got), None) if got else (None, reason)
    if rec.get("completions") is not None:
        completions, reason = _as_list(rec["completions"], "completions")
        if reason:
            return None, reason
        return (prompt, "prompt", completions, [f"completions[{i}]" for i in range(len(completions))],
                list(range(len(completions)))), None
    if rec.get("responses") is not None:
        responses, reason = _as_list(rec["responses"], "responses")
        if reason:
            return None, reason
        key = "scores" if rec.get("ranks") is None and rec.get("scores") is not None else "ranks"
        given, reason = _as_list(rec.get(key), key)
        if reason:
            return None, reason
        if len(given) != len(responses):
            return None, f"field '{key}': {len(given)} {key} for {len(responses)} responses"
        for i, r in enumerate(given):
            if key == "scores":
                reason = _score(r, f"scores[{i}]")[1]
            elif isinstance(r, bool) or not isinstance(r, int):
                reason = f"field 'ranks[{i}]': wrong type {type(r).__name__}"
            if reason:
                return None, reason
        ranks = given if key == "ranks" else competition_ranks(given)  # scores: higher is better
        return (prompt, "prompt", responses, [f"responses[{i}]" for i in range(len(responses))], ranks), None
    return None, ("no recognisable shape (expected prompt/completions, prompt/responses/ranks or scores, "
                  "prompt/answers with a rank or score each, prompt/chosen/rejected, Human/Assistant "
                  "transcripts or message lists in chosen/rejected, or a message tree); "
                  f"fields: {label_files.field_names(rec)}")


def _tree_rankings(rec: dict, file_id: str, line: int) -> tuple[list[dict] | None, str | None]:
    """A message tree's rankings: one per human message with 2 or more ranked assistant replies
    (unranked replies left out), its prompt the conversation up to it."""
    turns, reason = label_files.tree_turns(rec["prompt"])
    if turns is None:
        return None, reason
    rows = []
    for n, turn in enumerate(turns):
        ranked = [(text, rank, name) for text, rank, name in turn.replies if rank is not None]
        if len(ranked) < 2:
            continue
        row, reason = _ranking_row(turn.turns, "prompt.text", [t for t, _, _ in ranked], [f for _, _, f in ranked],
                                   [r for _, r, _ in ranked], turn.message_id or f"{file_id}:{line}:{n}")
        if row is None and not reason.startswith(_TOO_FEW):  # replies that clean to one text rank nothing
            return None, reason
        rows += [row] if row else []
    if not rows:
        return None, "no human message with 2 or more distinct ranked assistant replies"
    return rows, None


def to_ranking(rec: dict, file_id: str, line: int) -> tuple[dict | list[dict] | None, str | None]:
    """A ranking row (COLUMNS), a message tree's rows, or None and the reason the record is quarantined."""
    if label_files.is_tree(rec):
        return _tree_rankings(rec, file_id, line)
    shape, reason = _shape(rec)
    if shape is None:
        return None, reason
    prompt_id, reason = label_files.record_id(rec)
    if reason:
        return None, reason
    return _ranking_row(*shape, prompt_id or f"{file_id}:{line}")


def _ranking_row(prompt_raw: Any, prompt_field: str, responses_raw: list, fields: list[str], given: list[int],
                 prompt_id: str) -> tuple[dict | None, str | None]:
    """A ranking row of raw prompt and responses and their given ranks (lower is better), or the reason
    there is none."""
    prompt, reason = _clean_prompt(prompt_raw, prompt_field)
    if prompt is None:
        return None, reason
    responses = []
    for value, name in zip(responses_raw, fields):
        text, reason = label_files.clean_text(value, name)
        if text is None:
            return None, reason
        responses.append(text)
    # identical texts are one response: they tie at the best rank any of them was given
    best = {}
    for text, r in zip(responses, given):
        best[text] = min(best.get(text, r), r)
    if len(best) < 2:
        return None, f"{_TOO_FEW} ({len(responses)} given)"
    return {"prompt_id": prompt_id, "prompt": prompt, "responses": responses,
            "ranks": competition_ranks([best[t] for t in responses], higher_is_better=False),
            "gold_scores": None}, None


def from_files(path: Path, field_map: dict[str, str] | None = None) -> label_files.Imported:
    """Every record of the file or folder `path`, its fields renamed by `field_map`, as a ranking or
    a quarantine row."""
    return label_files.read_all(path, to_ranking, COLUMNS, "comparisons.import_path", "ranking", field_map)


# -- the stage --------------------------------------------------------------------------------------

def write(table: pd.DataFrame, path: Path) -> None:
    pq.write_table(pa.Table.from_pandas(table[COLUMNS], SCHEMA, preserve_index=False), path)


def _check_rankable(prompts: pd.DataFrame, split: str, remedy: str) -> None:
    """The simulated labeler ranks by gold score, which exists for the embedded world's prompts only:
    on a user's own prompts it would rank by length and little else, so it refuses."""
    from rlhf.evaluation import any_world_prompt

    if not prompts.empty and not any_world_prompt(prompts.prompt):
        raise ComparisonsError(f"the simulated labeler ranks only the embedded world's prompts, and none of the "
                               f"{len(prompts)} {split} prompts is one; set {remedy}")


def run(cfg: ComparisonsConfig, sft_share: float, sft_path: Path, prompts_dir: Path, out_dir: Path,
        seed: int, device: str) -> dict[str, float]:
    """The whole comparisons stage: out_dir/{train,val,quarantine}.parquet. Returns its metrics;
    raises ComparisonsError (or label_files.ImportFilesError) when the stage must fail, leaving no
    train/val files behind (the quarantine stays, to see why)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("train.parquet", "val.parquet", "quarantine.parquet", LABELER_FILE):
        (out_dir / name).unlink(missing_ok=True)  # nothing stale survives a failed run
    rngs: dict[str, random.Random] = {}  # per labeled split: K per prompt, then the labeler's noise
    tables: dict[str, pd.DataFrame] = {}
    quarantine = label_files.empty_quarantine()
    metrics: dict[str, float] = {}
    sampled: list[str] = []  # the splits the labeler ranks
    model = tokenizer = None

    def sample_split(split: str, prompts: pd.DataFrame) -> pd.DataFrame:
        nonlocal model, tokenizer
        if model is None:
            from rlhf import models

            tokenizer = models.load_tokenizer(sft_path)
            model = models.load_causal_lm(sft_path).to(models.pick_device(device))
        set_seed(split_seed(seed, split))  # the SFT model's samples
        rngs[split] = random.Random(split_seed(seed, split))
        sampled.append(split)
        return sample_and_score(model, tokenizer, prompts, cfg, rngs[split])

    if cfg.source == "import":
        result = from_files(Path(cfg.import_path), cfg.import_field_map)
        quarantine = result.quarantine
        tables["train"], val = label_files.gate_and_split(result, "comparisons", cfg.max_quarantine_fraction,
                                                          cfg.import_val_fraction, VAL_SALT, out_dir / "quarantine.parquet")
        if cfg.import_val_fraction > 0:
            tables["val"] = val
        metrics.update({"comparisons/imported": len(result.rows), "comparisons/quarantined": len(quarantine),
                        "comparisons/records_read": result.read})  # a message tree gives several rankings
    else:
        label_files.write_quarantine(quarantine, out_dir / "quarantine.parquet")
        train_prompts = rm_prompts(pd.read_parquet(prompts_dir / "train.parquet"), cfg, sft_share, seed)
        if train_prompts.empty:
            raise ComparisonsError(f"no RM prompts: no train prompt hashes into [{sft_share}, "
                                   f"{sft_share + cfg.prompt_share}) (comparisons.prompt_share)")
        _check_rankable(train_prompts, "train", "comparisons.source: import")
        tables["train"] = sample_split("train", train_prompts)
    if "val" not in tables:
        val_prompts = pd.read_parquet(prompts_dir / "val.parquet")
        if cfg.max_val_prompts:
            val_prompts = val_prompts.head(cfg.max_val_prompts)
        _check_rankable(val_prompts, "val", "comparisons.import_val_fraction > 0, to validate on imported rankings"
                        if cfg.source == "import" else "comparisons.source: import")
        tables["val"] = sample_split("val", val_prompts)
    if sampled:
        # calibrated on the first split the labeler ranks: train (val only when train is imported)
        gold = list(tables[sampled[0]].gold_scores)
        noise = calibrate_noise(gold, cfg.target_agreement) if cfg.labeler_noise == "auto" else cfg.labeler_noise
        metrics["comparisons/labeler_noise"] = noise
        for split in sampled:
            tables[split] = rank_all(tables[split], noise, rngs[split])
            split_gold = list(tables[split].gold_scores)
            # the measured {split}_labeler_gold_agreement is one draw of the noise; this is its expectation
            for name, value in (("expected_labeler_gold_agreement", expected_agreement(split_gold, noise)),
                                ("expected_inter_labeler_agreement", expected_inter_labeler_agreement(split_gold, noise))):
                if value is not None:
                    metrics[f"comparisons/{split}_{name}"] = value
        calibrated = metrics.get(f"comparisons/{sampled[0]}_expected_labeler_gold_agreement")
        if calibrated is not None:  # what the calibration aimed at: target_agreement, or what a fixed noise gives
            metrics["comparisons/expected_agreement"] = calibrated
    for split in SPLITS:
        table = tables[split]
        if table.empty:
            raise ComparisonsError(f"no {split} prompts in {prompts_dir}" if split in sampled else
                                   f"no {split} rankings: {metrics['comparisons/imported']} imported, "
                                   f"comparisons.import_val_fraction={cfg.import_val_fraction}")
        ks = table.responses.map(len)
        metrics.update({f"comparisons/{split}_prompts": len(table), f"comparisons/{split}_responses": int(ks.sum()),
                        f"comparisons/{split}_k_mean": float(ks.mean()),
                        **{f"comparisons/{split}_{k}": v for k, v in pair_counts(table).items()}})
        with_gold = table[table.gold_scores.notna()]
        agree, total = gold_agreement(list(with_gold.gold_scores), list(with_gold.ranks))
        if total:
            metrics[f"comparisons/{split}_labeler_gold_agreement"] = agree / total
    for split in SPLITS:
        write(tables[split], out_dir / f"{split}.parquet")
    if sampled:
        (out_dir / LABELER_FILE).write_text(json.dumps({"noise": metrics["comparisons/labeler_noise"],
                                                         "splits": sampled}) + "\n")
    return metrics


def read_labeler(folder: Path) -> dict | None:
    """What `run` wrote of the simulated labeler (`noise`, the `splits` it ranked), or None where every
    ranking was imported (or the folder predates the file)."""
    path = Path(folder) / LABELER_FILE
    return json.loads(path.read_text()) if path.exists() else None
