"""Stage synthesize: the embedded default's raw data: prompt-log shards (with planted personal
data and malformed rows), the ground truth of every planted PII span, the pretraining corpus, and
a description of the world."""

import json
import random
from datetime import datetime, timezone
from pathlib import Path

import _checkout  # noqa: F401  (first: this checkout's src/rlhf; see its doc)

from rlhf import cli, world

SECTIONS = ("world",)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--prompts", type=Path, required=True, help="folder for the raw prompt-log shards (JSONL)")
    p.add_argument("--pii-truth", type=Path, required=True,
                   help="JSONL of planted PII spans (type, prompt_id, start, end), for measurement only")
    p.add_argument("--corpus", type=Path, required=True, help="pretraining corpus (JSONL, one doc a line)")
    p.add_argument("--world", type=Path, required=True, help="JSON description of the world")
    args = p.parse_args()
    with cli.stage("synthesize", args, SECTIONS) as (cfg, run):
        w = cfg["world"]
        rng = random.Random(w.seed)
        records, truth = world.generate_prompt_logs(rng, w.n_users, w.prompts_per_user,
                                                    datetime(2026, 1, 1, tzinfo=timezone.utc),
                                                    pii_rate=w.pii_rate)
        malformed = world.malformed_records(rng)  # drawn either way: the corpus below stays the same
        lines = [json.dumps(r) for r in records] + (malformed if w.n_users else [])  # 0: no world prompt logs
        rng.shuffle(lines)
        args.prompts.mkdir(parents=True, exist_ok=True)
        for i in range(w.n_shards):
            (args.prompts / f"shard-{i:03d}.jsonl").write_text("".join(line + "\n" for line in lines[i::w.n_shards]))
        args.pii_truth.write_text("".join(json.dumps(t) + "\n" for t in truth))
        docs = world.generate_corpus(rng, w.corpus_docs)
        args.corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        args.world.write_text(json.dumps(world.world_description(), indent=2) + "\n")
        metrics = {"synthesize/raw_rows": len(lines), "synthesize/users": w.n_users,
                   "synthesize/pii_spans": len(truth), "synthesize/corpus_docs": len(docs),
                   "synthesize/corpus_chars": sum(len(d) for d in docs)}
        run.write_metrics(args.metrics, metrics)
        print(metrics)


if __name__ == "__main__":
    main()
