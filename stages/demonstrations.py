"""Stage demonstrations: a demonstration for each SFT prompt (simulated labeler), or demonstrations
imported from a file or folder (JSONL, JSON, CSV, Parquet; prompt/response, instruction/input/output,
Human/Assistant transcripts, message lists), PII-scrubbed, bad records quarantined."""

import json
import sys
from pathlib import Path

import _checkout  # noqa: F401  (first: this checkout's src/rlhf; see its doc)

from rlhf import startup

if __name__ == "__main__":  # before the heavy imports: the allocator, the flow's warm process (rlhf.startup)
    startup.begin(__file__)

from rlhf import cli, demonstrations, label_files  # noqa: E402

SECTIONS = ("demonstrations",)


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--prompts", type=Path, required=True, help="folder of {train,val}.parquet prompts")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for {train,val}.parquet demonstrations, set_aside.parquet, quarantine.parquet")
    args = p.parse_args()
    with cli.stage("demonstrations", args, SECTIONS) as (cfg, run):
        try:
            metrics = demonstrations.run(cfg["demonstrations"], args.prompts, args.out)
        except label_files.ImportFilesError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        run.write_metrics(args.metrics, metrics)
        print(json.dumps(metrics))


if __name__ == "__main__":
    main()
