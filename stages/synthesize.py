"""Stage synthesize: the embedded default's raw data (prompt-log shards and pretraining corpus)."""

import json
import random
from datetime import datetime, timezone
from pathlib import Path

from rlhf import cli, world

SECTIONS = ("world",)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--prompts", type=Path, required=True, help="folder for the raw prompt-log shards")
    p.add_argument("--corpus", type=Path, required=True, help="pretraining corpus (JSONL, one doc a line)")
    args = p.parse_args()
    with cli.stage("synthesize", args, SECTIONS) as (cfg, run):
        w = cfg["world"]
        rng = random.Random(w.seed)
        records = world.generate_prompt_logs(rng, w.n_users, w.prompts_per_user,
                                             datetime(2026, 1, 1, tzinfo=timezone.utc))
        lines = [json.dumps(r) for r in records] + world.malformed_records(rng)
        rng.shuffle(lines)
        args.prompts.mkdir(parents=True, exist_ok=True)
        for i in range(w.n_shards):
            shard = lines[i::w.n_shards]
            (args.prompts / f"shard-{i:03d}.jsonl").write_text("\n".join(shard) + "\n")
        docs = world.generate_corpus(rng, w.corpus_docs)
        args.corpus.parent.mkdir(parents=True, exist_ok=True)
        args.corpus.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        run.write_metrics(args.metrics, {
            "synthesize/raw_rows": len(lines), "synthesize/users": w.n_users,
            "synthesize/corpus_docs": len(docs),
            "synthesize/corpus_chars": sum(len(d) for d in docs)})
        print(f"wrote {len(lines)} raw prompt rows in {w.n_shards} shards and {len(docs)} corpus docs")


if __name__ == "__main__":
    main()
