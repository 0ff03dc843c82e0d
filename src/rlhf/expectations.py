"""Great Expectations checks of the ingest stage's output splits.

`check_splits` validates every split (train/val/test) against one suite each, plus two cross-split
validations (user IDs disjoint between every pair of splits; split fractions near their targets),
and builds the HTML Data Docs of all of them into a local folder. The ingest stage calls it on
every run and fails when `CheckResult.success` is false, printing `CheckResult.failures`.

Data protection: neither the failure lines nor the Data Docs ever contain prompt text. Every
validation runs with result_format SUMMARY and `partial_unexpected_count` 0 for the per-split suites,
so GX keeps counts but no unexpected values; the example IDs in the failure lines are looked up in
pandas by this module and hold prompt_ids / user_ids only.

No network: analytics are off (env var and context config), the context is ephemeral (in-memory
stores, no temporary docs site, no cloud), and great_expectations is imported lazily inside
`check_splits` because its import alone costs ~2.5 s.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

COLUMNS = ("prompt_id", "user_id", "org_id", "created_at", "source", "prompt")
NOT_NULL = ("prompt_id", "user_id", "prompt")
SOURCES = ("labeler", "customer")
PII_COLUMN = "pii_free"  # derived: pii_free(prompt) per row, added to a copy of each split
EXAMPLES = 5  # IDs shown per failed expectation
SITE_NAME = "rlhf_ingest"
DATASOURCE = "ingest"
# Per-split suites touch the prompt column: keep counts, never values (nor index lists).
SPLIT_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0}
# Cross-split frames hold only split names, counts and fractions: safe to list in the docs.
CROSS_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
_GX_DOCS_ENTRIES = ("index.html", "static", "expectations", "validations")


@dataclass(frozen=True)
class CheckResult:
    success: bool
    failures: list[str]  # one readable line per failed expectation; counts and ids, never prompts


# A message builder gets the GX result dict of a failed expectation and returns the detail text.
_Detail = Callable[[dict[str, Any]], str]


def check_splits(splits: dict[str, pd.DataFrame], *, max_chars: int,
                 expected_fractions: dict[str, float], fraction_tolerance: float,
                 pii_free: Callable[[str], bool], docs_dir: Path, fraction_of: str = "user_id") -> CheckResult:
    """Validate the output splits with Great Expectations and build Data Docs into `docs_dir`.

    Per split: exact column list (in order; the derived `pii_free` column last), prompt_id /
    user_id / prompt non-null, prompt_id unique, prompt length in [1, max_chars], source in
    {labeler, customer} or null, and `pii_free(prompt)` true for every row. Across splits: no user
    in two splits, and each split's share of the distinct `fraction_of` values (the unit the split
    assigns: users, or orgs) within `fraction_tolerance` of `expected_fractions[split]`.
    Returns a CheckResult; `docs_dir/index.html` exists afterwards.
    """
    if set(splits) != set(expected_fractions):
        raise ValueError(f"splits {sorted(splits)} and expected_fractions "
                         f"{sorted(expected_fractions)} must name the same splits")
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    docs_dir = Path(docs_dir).resolve()

    with _quiet_gx():
        import great_expectations as gx
        import great_expectations.expectations as gxe
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.base import (
            DataContextConfig, InMemoryStoreBackendDefaults, ProgressBarsConfig)

        ctx = gx.get_context(mode="ephemeral", project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            data_docs_sites={SITE_NAME: {
                "class_name": "SiteBuilder",
                "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(docs_dir)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            }},
        ))
        source = ctx.data_sources.add_pandas(DATASOURCE)
        run_id = RunIdentifier(run_name="ingest")
        failures: list[str] = []

        def validate(name: str, frame: pd.DataFrame, checks: list[tuple[Any, _Detail]],
                     result_format: dict, label: str) -> None:
            batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
            suite = ctx.suites.add(gx.ExpectationSuite(name=name))
            details: dict[str, _Detail] = {}
            for expectation, detail in checks:
                details[suite.add_expectation(expectation).id] = detail
            vd = ctx.validation_definitions.add(
                gx.ValidationDefinition(name=name, data=batch, suite=suite))
            result = vd.run(batch_parameters={"dataframe": frame}, result_format=result_format,
                            run_id=run_id)
            for r in result.results:
                if r.success:
                    continue
                cfg = r.expectation_config
                what = cfg.type + (f"({cfg.kwargs['column']})" if "column" in cfg.kwargs else "")
                info = r.exception_info or {}
                if info.get("raised_exception"):
                    msg = str(info.get("exception_message") or "").splitlines()[:1]
                    text = f"could not be evaluated: {msg[0][:200] if msg else 'error'}"
                else:
                    text = details[cfg.id](r.result or {})
                failures.append(f"{label}: {what}: {text}")

        for split, df in splits.items():
            frame, checks = _split_checks(gxe, df, max_chars, pii_free)
            validate(f"prompts_{split}", frame, checks, SPLIT_RESULT_FORMAT, split)

        frame, checks = _disjoint_checks(gxe, splits)
        validate("cross_split_users", frame, checks, CROSS_RESULT_FORMAT, "splits")
        # a split without the column already fails its schema check; shares of it mean nothing
        if all(fraction_of in df for df in splits.values()):
            frame, checks = _fraction_checks(gxe, splits, expected_fractions, fraction_tolerance, fraction_of)
            validate("split_fractions", frame, checks, CROSS_RESULT_FORMAT, "splits")

        _clear_docs(docs_dir)
        ctx.build_data_docs(site_names=[SITE_NAME])
    if not (docs_dir / "index.html").is_file():
        raise RuntimeError(f"Great Expectations wrote no Data Docs index to {docs_dir}")
    return CheckResult(success=not failures, failures=failures)


def _split_checks(gxe, df: pd.DataFrame, max_chars: int, pii_free: Callable[[str], bool]):
    """The frame to validate (a copy with the derived PII column) and its expectations."""
    frame = df.copy(deep=False)
    if PII_COLUMN in frame.columns:  # an input column of that name must show up as unexpected
        frame = frame.rename(columns={PII_COLUMN: f"{PII_COLUMN} (input)"})
    n = len(frame)
    has = set(frame.columns)
    if "prompt" in has:
        frame[PII_COLUMN] = pd.Series(
            [True if not isinstance(p, str) else bool(pii_free(p)) for p in frame["prompt"]],
            index=frame.index, dtype=bool)

    def ids(mask: pd.Series) -> str:
        """prompt_ids (or row numbers where there is no prompt_id) of up to EXAMPLES rows."""
        rows = frame.loc[mask.to_numpy()]
        if "prompt_id" in has:
            pids = rows["prompt_id"].head(EXAMPLES)
            shown = [p if isinstance(p, str) else f"<row {i}>"
                     for i, p in zip(mask.to_numpy().nonzero()[0], pids)]
        else:
            shown = [f"<row {i}>" for i in mask.to_numpy().nonzero()[0][:EXAMPLES]]
        return f"prompt_ids {shown}" + (" ..." if int(mask.sum()) > EXAMPLES else "")

    def count(res: dict) -> str:
        return f"{res.get('unexpected_count', '?')} of {res.get('element_count', n)} rows"

    checks: list[tuple[Any, _Detail]] = []

    def schema(res: dict) -> str:
        observed = [c for c in res.get("observed_value", list(frame.columns)) if c != PII_COLUMN]
        missing = [c for c in COLUMNS if c not in observed]
        extra = [c for c in observed if c not in COLUMNS]
        parts = ([f"missing {missing}"] if missing else []) + \
                ([f"unexpected {extra}"] if extra else [])
        if not parts:
            parts = ["wrong order"]
        return "; ".join(parts) + f"; observed {observed}, expected {list(COLUMNS)}"

    checks.append((gxe.ExpectTableColumnsToMatchOrderedList(
        column_list=[*COLUMNS, PII_COLUMN],
        description=f"Exact split schema {list(COLUMNS)}; `{PII_COLUMN}` is derived by the check"),
        schema))

    for col in NOT_NULL:
        if col not in has:
            continue

        def nulls(res: dict, col=col) -> str:
            mask = frame[col].isna()
            return f"{count(res)} null; {ids(mask)}"
        checks.append((gxe.ExpectColumnValuesToNotBeNull(column=col), nulls))

    if "prompt_id" in has:
        def dupes(res: dict) -> str:
            dup = frame["prompt_id"].dropna()
            dup = dup[dup.duplicated(keep=False)].unique()
            shown = list(dup[:EXAMPLES]) + (["..."] if len(dup) > EXAMPLES else [])
            return f"{count(res)} share a prompt_id; duplicated prompt_ids {shown}"
        checks.append((gxe.ExpectColumnValuesToBeUnique(column="prompt_id"), dupes))

    if "prompt" in has:
        def lengths(res: dict) -> str:
            lens = frame["prompt"].str.len()
            mask = (lens < 1) | (lens > max_chars)
            bad = lens[mask]
            return (f"{count(res)} outside 1..{max_chars} chars "
                    f"(observed lengths {int(bad.min())}..{int(bad.max())}); {ids(mask)}"
                    if len(bad) else f"{count(res)} outside 1..{max_chars} chars")
        checks.append((gxe.ExpectColumnValueLengthsToBeBetween(
            column="prompt", min_value=1, max_value=max_chars,
            description=f"Prompt length between 1 and {max_chars} characters"), lengths))

    if "source" in has:
        def sources(res: dict) -> str:
            s = frame["source"]
            mask = s.notna() & ~s.isin(SOURCES)
            values = [str(v)[:30] for v in s[mask].unique()[:EXAMPLES]]
            return f"{count(res)} with source outside {list(SOURCES)}: {values}; {ids(mask)}"
        checks.append((gxe.ExpectColumnValuesToBeInSet(
            column="source", value_set=list(SOURCES),
            description="source is labeler or customer (or null)"), sources))

    if PII_COLUMN in frame.columns:
        def pii(res: dict) -> str:
            mask = ~frame[PII_COLUMN]
            return f"{count(res)} still match a PII pattern; {ids(mask)}"
        checks.append((gxe.ExpectColumnValuesToBeInSet(
            column=PII_COLUMN, value_set=[True],
            description="No PII pattern left: pii_free(prompt) is true for every prompt"), pii))
    return frame, checks


def _disjoint_checks(gxe, splits: dict[str, pd.DataFrame]):
    """One row per pair of splits with the number of user IDs they share; expect 0 each."""
    users = {s: set(df["user_id"].dropna()) if "user_id" in df.columns else set()
             for s, df in splits.items()}
    pairs, shared = [], {}
    for a, b in itertools.combinations(splits, 2):
        pairs.append(f"{a}/{b}")
        shared[f"{a}/{b}"] = sorted(users[a] & users[b])
    frame = pd.DataFrame({"pair": pd.Series(pairs, dtype=object),
                          "shared_users": pd.Series([len(shared[p]) for p in pairs], dtype="int64")})

    def detail(res: dict) -> str:
        bad = [p for p in pairs if shared[p]]
        return "; ".join(
            f"{p} share {len(shared[p])} user(s) {shared[p][:EXAMPLES]}"
            + (" ..." if len(shared[p]) > EXAMPLES else "") for p in bad)
    return frame, [(gxe.ExpectColumnValuesToBeBetween(
        column="shared_users", min_value=0, max_value=0,
        description="User IDs are disjoint between every pair of splits"), detail)]


def _fraction_checks(gxe, splits: dict[str, pd.DataFrame], expected: dict[str, float],
                     tolerance: float, unit: str):
    """One row per split: distinct `unit` values, observed and expected fraction, |deviation| <=
    tolerance."""
    names = list(splits)
    rows = [int(splits[s][unit].nunique()) for s in names]
    total = sum(rows)
    observed = [r / total if total else 0.0 for r in rows]
    deviation = [abs(o - float(expected[s])) for o, s in zip(observed, names)]
    frame = pd.DataFrame({"split": pd.Series(names, dtype=object),
                          "rows": pd.Series(rows, dtype="int64"),
                          "observed_fraction": observed,
                          "expected_fraction": [float(expected[s]) for s in names],
                          "abs_deviation": deviation})

    def detail(res: dict) -> str:
        bad = [i for i, d in enumerate(deviation) if not d <= tolerance]
        return "; ".join(
            f"{names[i]} has {rows[i]} of {total} distinct {unit} = {observed[i]:.3f}, "
            f"expected {float(expected[names[i]]):.3f} ± {tolerance}" for i in bad)
    # A tiny epsilon so that a deviation equal to the tolerance up to float rounding passes.
    return frame, [(gxe.ExpectColumnValuesToBeBetween(
        column="abs_deviation", min_value=0, max_value=tolerance + 1e-12,
        description=f"Split fractions within {tolerance} of {dict(expected)}"), detail)]


def _clear_docs(docs_dir: Path) -> None:
    """Remove the Data Docs of an earlier call (only GX's own entries), so no stale page stays."""
    for name in _GX_DOCS_ENTRIES:
        path = docs_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


@contextlib.contextmanager
def _quiet_gx():
    """No analytics, no INFO logs, no progress bars, no library warnings from GX in the stage log."""
    os.environ["GX_ANALYTICS_ENABLED"] = "False"
    logger = logging.getLogger("great_expectations")
    if logger.level == logging.NOTSET or logger.level < logging.WARNING:
        logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"great_expectations(\.|$)")
        warnings.filterwarnings("ignore", message=r".*`result_format` configured at the")
        yield
