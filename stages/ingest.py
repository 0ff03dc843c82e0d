"""Stage ingest: validate, quarantine, normalise, dedup, cap per user, split by user ID."""

import json
from pathlib import Path

from rlhf import cli, ingest

SECTIONS = ("ingest",)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--raw", type=Path, nargs="+", required=True,
                   help="folders of raw prompt files (the synthesized shards and data/incoming)")
    p.add_argument("--out", type=Path, required=True, help="folder for {train,val,test}.parquet")
    p.add_argument("--quarantine", type=Path, required=True, help="folder for quarantined rows")
    p.add_argument("--reports", type=Path, required=True, help="folder for the ingest report")
    args = p.parse_args()
    with cli.stage("ingest", args, SECTIONS) as (cfg, run):
        c = cfg["ingest"]
        files = ingest.raw_files(args.raw)
        if not files:
            raise SystemExit(f"error: no raw prompt files ({', '.join(ingest.RAW_SUFFIXES)}) under "
                             f"{', '.join(map(str, args.raw))}")
        result = ingest.ingest(files, c)
        n = result.counts
        frac = n.quarantined / max(1, n.read)
        for d in (args.out, args.quarantine, args.reports):
            d.mkdir(parents=True, exist_ok=True)
        result.quarantine.to_parquet(args.quarantine / "rows.parquet", index=False)
        if frac > c.max_quarantine_fraction:
            reasons = result.quarantine.reason.str.split(":").str[0].value_counts().head(5).to_dict()
            raise SystemExit(f"error: {n.quarantined} of {n.read} rows ({frac:.1%}) quarantined, over "
                             f"ingest.max_quarantine_fraction={c.max_quarantine_fraction}; see "
                             f"{args.quarantine / 'rows.parquet'}; top reasons: {reasons}")
        for split, df in result.splits.items():
            df.to_parquet(args.out / f"{split}.parquet", index=False)
        metrics = {"ingest/rows_read": n.read, "ingest/quarantined": n.quarantined,
                   "ingest/duplicates_removed": n.duplicates, "ingest/capped_removed": n.capped,
                   **{f"ingest/rows_{s}": k for s, k in n.kept.items()},
                   **{f"ingest/users_{s}": int(df.user_id.nunique()) for s, df in result.splits.items()},
                   "ingest/quarantine_fraction": frac}
        report = {"files": [str(f) for f in files], "metrics": metrics,
                  "quarantine_reasons": result.quarantine.reason.value_counts().to_dict()}
        (args.reports / "summary.json").write_text(json.dumps(report, indent=2) + "\n")
        run.write_metrics(args.metrics, metrics)
        run.log_artifacts(args.reports, "report")
        print(json.dumps(metrics))


if __name__ == "__main__":
    main()
