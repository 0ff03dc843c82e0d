"""Stage comparisons: K responses (K in [k_min, k_max], per prompt) sampled from the SFT model for each
RM prompt and each validation prompt, ranked by the simulated labeler (gold score plus noise
calibrated to the target agreement with gold); or rankings imported from files (ranked lists,
chosen/rejected pairs, Human/Assistant transcripts), PII-scrubbed, bad records quarantined."""

import json
import sys
from pathlib import Path

import _checkout  # noqa: F401  (first: this checkout's src/rlhf; see its doc)

from rlhf import startup

if __name__ == "__main__":  # before the heavy imports: the allocator, the flow's warm process (rlhf.startup)
    startup.begin(__file__)

from rlhf import cli, comparisons, label_files  # noqa: E402

SECTIONS = ("comparisons", "demonstrations")  # demonstrations.prompt_share: where the RM prompts start


def main() -> None:
    p = cli.parser(__doc__, SECTIONS)
    p.add_argument("--sft", type=Path, required=True, help="HF-format SFT model")
    p.add_argument("--prompts", type=Path, required=True, help="folder of {train,val}.parquet prompts")
    p.add_argument("--out", type=Path, required=True,
                   help="folder for {train,val}.parquet rankings and quarantine.parquet")
    args = p.parse_args()
    with cli.stage("comparisons", args, SECTIONS) as (cfg, run):
        common = cfg["common"]
        try:
            metrics = comparisons.run(cfg["comparisons"], cfg["demonstrations"].prompt_share, args.sft,
                                      args.prompts, args.out, common.seed, common.device)
        except label_files.ImportFilesError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(1) from None
        run.write_metrics(args.metrics, metrics)
        print(json.dumps(metrics))


if __name__ == "__main__":
    main()
