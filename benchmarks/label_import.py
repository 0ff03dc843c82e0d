"""Import speed of rankings and demonstrations from OpenAssistant-shaped message trees, HH pairs,
UltraFeedback and Nectar records, and Alpaca records in a JSON array.

    python benchmarks/label_import.py --trees 2000

Writes, in a temporary folder, `--trees` message trees shaped like oasst1's (a first message, 3
ranked assistant replies, a human turn after each with 2 ranked replies: 13 messages and 4 rankings
per tree, a few words of text each, one tree in `--bad-every` with a deleted reply and one with a
rank that is not an integer) in the three ways oasst ships them, and 4 times as many Anthropic HH
chosen/rejected pairs and UltraFeedback records (TRL's conversational preference) and as many
Nectar records (7 answers ranked 1 to 7, `.jsonl.gz`) as trees, and 10 times as many Alpaca
instruction/input/output records as one JSON array on one line (as `json.dump` writes it), then times what
`comparisons` and `demonstrations` do with each file (`comparisons.from_files`,
`demonstrations.from_files`: reading, assembling the trees, PII scrubbing, quarantine). Prints one
line per file, and as its last line one JSON object with, per file, its size on disk, records read,
rankings (or demonstrations) kept, rows quarantined, seconds and records per second.
"""

import argparse
import gzip
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rlhf import comparisons, demonstrations  # noqa: E402

WORDS = ("the a fruit colour apple pear explain why how what is my your code python function list write story "
         "about river stone quick answer please thanks").split()


def text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def tree(rng: random.Random, t: int, bad: str | None) -> dict:
    """One nested tree (oasst's `*.trees.jsonl` record). `bad`: None, "deleted" (a reply marked
    deleted, left out) or "rank" (a rank that is not an integer: the tree is quarantined)."""
    def reply(mid: str, rank, n: int, below: list | None = None) -> dict:
        node = {"message_id": mid, "role": "assistant", "text": text(rng, n), "rank": rank, "lang": "en"}
        return node | ({"replies": below} if below else {})

    replies = []
    for a in range(3):
        human = {"message_id": f"t{t}a{a}h", "role": "prompter", "text": text(rng, 15), "lang": "en",
                 "replies": [reply(f"t{t}a{a}h{b}", b, 60) for b in range(2)]}
        replies.append(reply(f"t{t}a{a}", a, 80, [human]))
    if bad == "deleted":
        replies.append(reply(f"t{t}x", 3, 40) | {"deleted": True})
    if bad == "rank":
        replies[0]["rank"] = 0.5
    return {"message_tree_id": f"t{t}",
            "prompt": {"message_id": f"t{t}", "role": "prompter", "text": text(rng, 20), "lang": "en",
                       "replies": replies}}


def flat(node: dict, parent: str | None = None) -> list[dict]:
    """A nested tree as one message per row (oasst's `*.messages.jsonl` and its hub Parquet files)."""
    rows = [{"message_id": node["message_id"], "parent_id": parent, "role": node["role"], "text": node["text"],
             "rank": node.get("rank"), "deleted": node.get("deleted", False), "lang": node["lang"]}]
    for r in node.get("replies", []):
        rows += flat(r, node["message_id"])
    return rows


def hh_pair(rng: random.Random) -> dict:
    convo = f"\n\nHuman: {text(rng, 15)}\n\nAssistant: {text(rng, 40)}\n\nHuman: {text(rng, 10)}\n\nAssistant:"
    return {"chosen": f"{convo} {text(rng, 50)}", "rejected": f"{convo} {text(rng, 50)}"}


def ultrafeedback(rng: random.Random) -> dict:
    """A record of UltraFeedback's binarized sets: TRL's conversational preference, implicit prompt."""
    question = text(rng, 25)
    side = lambda: [{"role": "user", "content": question}, {"role": "assistant", "content": text(rng, 120)}]  # noqa: E731
    return {"prompt": question, "chosen": side(), "rejected": side(), "score_chosen": 8.0, "score_rejected": 4.0}


def nectar(rng: random.Random) -> dict:
    """A Nectar record: an HH-style prompt and 7 answers ranked 1 to 7, as objects."""
    ranks = rng.sample(range(1, 8), 7)
    return {"prompt": f"\n\nHuman: {text(rng, 25)}\n\nAssistant:", "turns": 1, "num_responses": 7,
            "answers": [{"answer": text(rng, 80), "model": f"m{i}", "rank": float(r)} for i, r in enumerate(ranks)]}


def alpaca(rng: random.Random) -> dict:
    return {"instruction": text(rng, 20), "input": text(rng, 10) if rng.random() < 0.4 else "", "output": text(rng, 60)}


def write_files(folder: Path, trees: int, bad_every: int, seed: int) -> dict[str, Path]:
    rng = random.Random(seed)
    nested = [tree(rng, t, None if t % bad_every else ("deleted", "rank")[(t // bad_every) % 2]) for t in range(trees)]
    messages = [m for t in nested for m in flat(t["prompt"])]
    random.Random(seed + 1).shuffle(messages)  # a tree's messages anywhere in the file, as in the hub's files
    paths = {"trees.jsonl.gz": folder / "oasst.trees.jsonl.gz", "messages.jsonl.gz": folder / "oasst.messages.jsonl.gz",
             "messages.parquet": folder / "oasst.messages.parquet", "hh.jsonl": folder / "hh.jsonl",
             "ultrafeedback.parquet": folder / "ultrafeedback.parquet", "nectar.jsonl.gz": folder / "nectar.jsonl.gz",
             "alpaca.json": folder / "alpaca.json"}
    with gzip.open(paths["trees.jsonl.gz"], "wt", compresslevel=6) as f:
        f.writelines(json.dumps(t) + "\n" for t in nested)
    with gzip.open(paths["messages.jsonl.gz"], "wt", compresslevel=6) as f:
        f.writelines(json.dumps(m) + "\n" for m in messages)
    pd.DataFrame(messages).to_parquet(paths["messages.parquet"], index=False)
    paths["hh.jsonl"].write_text("".join(json.dumps(hh_pair(rng)) + "\n" for _ in range(4 * trees)))
    pd.DataFrame([ultrafeedback(rng) for _ in range(4 * trees)]).to_parquet(paths["ultrafeedback.parquet"], index=False)
    with gzip.open(paths["nectar.jsonl.gz"], "wt", compresslevel=6) as f:
        f.writelines(json.dumps(nectar(rng)) + "\n" for _ in range(trees))
    with paths["alpaca.json"].open("w") as f:
        json.dump([alpaca(rng) for _ in range(10 * trees)], f)
    return paths


def timed(read, path: Path) -> dict:
    start = time.perf_counter()
    result = read(path)
    seconds = time.perf_counter() - start
    return {"mb": round(path.stat().st_size / 2**20, 2), "records": result.read, "kept": len(result.rows),
            "quarantined": len(result.quarantine), "seconds": round(seconds, 2),
            "records_per_s": round(result.read / seconds)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trees", type=int, default=2000, help="message trees (13 messages, 4 rankings each)")
    p.add_argument("--bad-every", type=int, default=50, help="one tree in this many has a deleted reply or a bad rank")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    out: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_files(Path(tmp), args.trees, args.bad_every, args.seed)
        for name, path in paths.items():
            if name == "alpaca.json":
                continue
            out[f"rankings/{name}"] = timed(comparisons.from_files, path)
            print(f"rankings from {name}: {json.dumps(out[f'rankings/{name}'])}", flush=True)
        for name in ("trees.jsonl.gz", "messages.parquet", "alpaca.json"):
            out[f"demonstrations/{name}"] = timed(demonstrations.from_files, paths[name])
            print(f"demonstrations from {name}: {json.dumps(out[f'demonstrations/{name}'])}", flush=True)
    print(json.dumps({"trees": args.trees, **out}))


if __name__ == "__main__":
    main()
