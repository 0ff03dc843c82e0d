"""Ingest throughput, memory and PII detection quality on generated raw prompts.

    python benchmarks/ingest.py --rows 1000000 [--gzip] [--json]

Generates that many raw prompt-log rows with the world's generator (JSONL shards, planted PII,
ground truth; `--gzip` writes them as .jsonl.gz, `--json` as one JSON array per shard, all on one
line as json.dump writes it), runs the ingest stage's code on them in a child
process (so its peak RSS is its own), then measures the PII detectors against the ground truth.
Prints as its last line one JSON object: rows, seconds, rows_per_s, peak_rss_mb, raw_mb (the
shards on disk), and pii precision/recall per type.
"""

import argparse
import gzip
import json
import multiprocessing as mp
import random
import resource
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from rlhf import config, ingest, pii, world  # noqa: E402


def generate(folder: Path, rows: int, users: int, shards: int, seed: int, gzipped: bool,
             as_json: bool) -> tuple[Path, int]:
    """Raw shards plus a truth file, written chunk by chunk (bounded memory)."""
    folder.mkdir(parents=True)
    suffix = (".json" if as_json else ".jsonl") + (".gz" if gzipped else "")
    files = [gzip.open(folder / f"shard-{i:03d}{suffix}", "wt", compresslevel=6) if gzipped else
             (folder / f"shard-{i:03d}{suffix}").open("w") for i in range(shards)]
    truth_path = folder.parent / "pii_truth.jsonl"
    n = 0
    with truth_path.open("w") as truth:
        for records, spans in world.iter_prompt_logs(random.Random(seed), rows, users,
                                                     datetime(2026, 1, 1, tzinfo=timezone.utc)):
            for r in records:
                if as_json:  # [first,second,...]
                    files[n % shards].write(("[" if n < shards else ",") + json.dumps(r))
                else:
                    files[n % shards].write(json.dumps(r) + "\n")
                n += 1
            truth.writelines(json.dumps(t) + "\n" for t in spans)
    for i, f in enumerate(files):
        f.write(("[]" if i >= n else "]") if as_json else "")
        f.close()
    return truth_path, n


def run_ingest(raw: Path, work: Path, queue) -> None:
    cfg = config.load("ingest", ROOT / "params.yaml")
    start = time.perf_counter()
    metrics = ingest.run([raw], work / "prompts", work / "quarantine", work / "reports", cfg)
    queue.put((time.perf_counter() - start, metrics))


def pii_quality(raw: Path, truth_path: Path) -> dict[str, dict[str, float]]:
    """Precision and recall per type of pii.find_spans on the normalised raw prompts.
    A planted span counts as found when a detected span of its type covers it whole; a detected
    span is correct when it overlaps a planted span of its type."""
    truth: dict[str, list[tuple[str, int, int]]] = {}
    for line in truth_path.open():
        t = json.loads(line)
        truth.setdefault(t["prompt_id"], []).append((t["type"], t["start"], t["end"]))
    tp_found = {t: 0 for t in pii.PII_TYPES}
    planted = {t: 0 for t in pii.PII_TYPES}
    tp_detected = {t: 0 for t in pii.PII_TYPES}
    detected = {t: 0 for t in pii.PII_TYPES}
    for shard in ingest.raw_files([raw])[0]:
        for _, r, _, _ in ingest.read_raw(shard, 10_000):
            spans = pii.find_spans(ingest.normalize(r["prompt"]))
            gold = truth.get(r["prompt_id"], [])
            for typ, s, e in gold:
                planted[typ] += 1
                tp_found[typ] += any(d.type == typ and d.start <= s and d.end >= e for d in spans)
            for d in spans:
                detected[d.type] += 1
                tp_detected[d.type] += any(typ == d.type and s < d.end and d.start < e for typ, s, e in gold)
    return {t: {"precision": round(tp_detected[t] / detected[t], 4) if detected[t] else None,
                "recall": round(tp_found[t] / planted[t], 4) if planted[t] else None,
                "planted": planted[t], "detected": detected[t]} for t in pii.PII_TYPES}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--users", type=int, default=0, help="distinct users (default: rows / 40)")
    p.add_argument("--shards", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gzip", action="store_true", help="write the shards gzipped (shard-000.jsonl.gz)")
    p.add_argument("--json", action="store_true", help="write each shard as one JSON array (shard-000.json)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        truth, n = generate(work / "raw", args.rows, args.users or max(20, args.rows // 40), args.shards, args.seed,
                            args.gzip, args.json)
        print(f"generated {n} rows in {time.perf_counter() - start:.1f} s", flush=True)
        queue = mp.get_context("spawn").Queue()
        child = mp.get_context("spawn").Process(target=run_ingest, args=(work / "raw", work, queue))
        child.start()
        seconds, metrics = queue.get()
        child.join()
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(json.dumps(metrics), flush=True)
        quality = pii_quality(work / "raw", truth)
        raw_mb = sum(f.stat().st_size for f in (work / "raw").iterdir()) / 2**20
    print(json.dumps({"rows": n, "seconds": round(seconds, 1), "rows_per_s": round(n / seconds),
                      "peak_rss_mb": round(peak_mb), "raw_mb": round(raw_mb, 1), "pii": quality}))


if __name__ == "__main__":
    main()
