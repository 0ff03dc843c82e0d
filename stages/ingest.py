"""Stage ingest: validate and quarantine, normalise, scrub PII, dedup, cap per user, split by
user ID, check the splits with Great Expectations."""

import json
import sys
from pathlib import Path

import _checkout  # noqa: F401  (first: this checkout's src/rlhf; see its doc)

from rlhf import startup

if __name__ == "__main__":  # before the heavy imports: the allocator, the flow's warm process (rlhf.startup)
    startup.begin(__file__)

from rlhf import cli, ingest  # noqa: E402

SECTIONS = ("ingest",)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--raw", type=Path, nargs="+", required=True,
                   help="folders of raw prompt files (JSONL, JSON, CSV, Parquet): the synthesized shards "
                        "and data/incoming")
    p.add_argument("--out", type=Path, required=True, help="folder for {train,val,test}.parquet")
    p.add_argument("--quarantine", type=Path, required=True, help="folder for quarantined rows")
    p.add_argument("--reports", type=Path, required=True, help="folder for the ingest reports and Data Docs")
    args = p.parse_args()
    with cli.stage("ingest", args, SECTIONS) as (cfg, run):
        try:
            metrics = ingest.run(args.raw, args.out, args.quarantine, args.reports, cfg["ingest"])
        except ingest.IngestError as e:
            if args.reports.exists():  # the reports say why: keep them with the FAILED run
                run.log_artifacts(args.reports, "report")
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        run.write_metrics(args.metrics, metrics)
        run.log_artifacts(args.reports, "report")
        print(json.dumps(metrics))


if __name__ == "__main__":
    main()
