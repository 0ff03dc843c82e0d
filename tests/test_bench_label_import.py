"""benchmarks/label_import.py: every shape oasst ships its trees in gives the same rankings, with its
bad trees quarantined as the importers promise; HH, UltraFeedback and Nectar records and a compact
JSON array of Alpaca records import whole;
the script ends with its JSON line."""

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_three_tree_shapes_and_hh_pairs_import_with_the_expected_counts(run_script):
    code, out, _ = run_script(ROOT / "benchmarks" / "label_import.py", "--trees", "40", "--bad-every", "10")
    assert code == 0
    figures = json.loads(out.strip().splitlines()[-1])
    # 40 trees of 4 rankings; trees 0 and 20 carry a deleted reply (left out), 10 and 30 a rank of 0.5
    nested = figures["rankings/trees.jsonl.gz"]
    assert (nested["records"], nested["kept"], nested["quarantined"]) == (40, 38 * 4, 2)  # a bad tree whole
    for name in ("messages.jsonl.gz", "messages.parquet"):
        flat = figures[f"rankings/{name}"]
        # 13 messages a tree and 2 deleted ones; the bad reply and its 3 descendants go, 3 rankings stay
        assert (flat["records"], flat["kept"], flat["quarantined"]) == (40 * 13 + 2, 38 * 4 + 2 * 3, 2 + 2 * 4)
    for name in ("hh.jsonl", "ultrafeedback.parquet"):
        assert (figures[f"rankings/{name}"]["records"], figures[f"rankings/{name}"]["kept"]) == (160, 160)
    assert (figures["rankings/nectar.jsonl.gz"]["records"], figures["rankings/nectar.jsonl.gz"]["kept"]) == (40, 40)
    assert figures["demonstrations/trees.jsonl.gz"]["kept"] == 38
    assert figures["demonstrations/messages.parquet"]["kept"] == 40  # a bad tree's best remaining reply
    alpaca = figures["demonstrations/alpaca.json"]
    assert (alpaca["records"], alpaca["kept"]) == (400, 400)  # one line: records count by their place
    assert all(f["seconds"] > 0 and f["records_per_s"] > 0 for k, f in figures.items() if k != "trees")
