"""Great Expectations checks of the ingest splits: each failure class is caught with a readable
line, Data Docs are built, and no prompt text reaches the failure lines or the Data Docs."""

import logging
import re
import socket

import pandas as pd
import pytest

from rlhf.expectations import COLUMNS, CheckResult, check_splits

MARKER = "ZQXV-PROMPT-MARKER"  # planted in every prompt: must never leave the frames
EMAIL = "alice.private@example.com"
FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
EMAIL_RE = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def pii_free(prompt: str) -> bool:
    return EMAIL_RE.search(prompt) is None


def frame(split: str, users: range, per_user: int = 5) -> pd.DataFrame:
    rows = [{"prompt_id": f"{split}-{u}-{k}", "user_id": f"user{u}",
             "org_id": None if k % 3 else f"org{u % 4}", "created_at": "2024-05-01T12:00:00Z",
             "source": ("labeler", "customer", None)[k % 3],
             "prompt": f"{MARKER} reverse the word apple, take {k}"}
            for u in users for k in range(per_user)]
    return pd.DataFrame(rows, columns=list(COLUMNS)).astype("str")  # as read from the parquet


@pytest.fixture
def splits():
    return {"train": frame("train", range(0, 80)), "val": frame("val", range(80, 90)),
            "test": frame("test", range(90, 100))}


def run(splits, tmp_path, **kw):
    args = dict(max_chars=200, expected_fractions=FRACTIONS, fraction_tolerance=0.05,
                pii_free=pii_free, docs_dir=tmp_path / "docs")
    args.update(kw)
    return check_splits(splits, **args)


def only_failure(result: CheckResult) -> str:
    assert not result.success
    assert len(result.failures) == 1, result.failures
    line = result.failures[0]
    assert MARKER not in line and EMAIL not in line
    return line


def docs_text(docs_dir) -> str:
    return "\n".join(p.read_text(errors="replace") for p in docs_dir.rglob("*") if p.is_file())


def test_clean_splits_pass_and_build_data_docs(splits, tmp_path):
    result = run(splits, tmp_path)
    assert result == CheckResult(success=True, failures=[])
    assert all(list(df.columns) == list(COLUMNS) for df in splits.values())  # inputs untouched
    docs = tmp_path / "docs"
    assert (docs / "index.html").is_file()
    pages = {p.parent.parent.parent.name for p in (docs / "validations").rglob("*.html")}
    assert pages == {"prompts_train", "prompts_val", "prompts_test", "cross_split_users",
                     "split_fractions"}


def test_missing_column(splits, tmp_path):
    splits["val"] = splits["val"].drop(columns=["user_id"])
    line = only_failure(run(splits, tmp_path))
    assert line.startswith("val: expect_table_columns_to_match_ordered_list:")
    assert "missing ['user_id']" in line


def test_wrong_column_order_and_extra_column(splits, tmp_path):
    splits["test"] = splits["test"][["user_id", "prompt_id", *COLUMNS[2:]]].assign(extra="x")
    line = only_failure(run(splits, tmp_path))
    assert line.startswith("test: expect_table_columns_to_match_ordered_list:")
    assert "unexpected ['extra']" in line and "observed ['user_id', 'prompt_id'" in line


def test_null_user_id(splits, tmp_path):
    splits["train"].loc[7, "user_id"] = None
    line = only_failure(run(splits, tmp_path))
    assert line == ("train: expect_column_values_to_not_be_null(user_id): 1 of 400 rows null; "
                    "prompt_ids ['train-1-2']")


def test_duplicate_prompt_id(splits, tmp_path):
    splits["val"].loc[3, "prompt_id"] = splits["val"].loc[0, "prompt_id"]
    line = only_failure(run(splits, tmp_path))
    assert line.startswith("val: expect_column_values_to_be_unique(prompt_id): 2 of 50 rows")
    assert "['val-80-0']" in line


def test_over_long_and_empty_prompt(splits, tmp_path):
    splits["test"].loc[4, "prompt"] = MARKER + "x" * 300
    splits["test"].loc[9, "prompt"] = ""
    line = only_failure(run(splits, tmp_path))
    assert line.startswith("test: expect_column_value_lengths_to_be_between(prompt): 2 of 50 rows "
                           "outside 1..200 chars (observed lengths 0..318)")
    assert "['test-90-4', 'test-91-4']" in line


def test_pii_left(splits, tmp_path):
    for i in (2, 11, 12, 13, 14, 15, 16):
        splits["train"].loc[i, "prompt"] = f"{MARKER} mail me at {EMAIL}"
    line = only_failure(run(splits, tmp_path))
    assert line.startswith("train: expect_column_values_to_be_in_set(pii_free): 7 of 400 rows "
                           "still match a PII pattern; prompt_ids ['train-0-2', 'train-2-1',")
    assert line.endswith(" ...")  # 5 ids shown, more exist
    assert line.count("train-") == 5


def test_source_outside_set(splits, tmp_path):
    splits["val"].loc[1, "source"] = "robot"
    line = only_failure(run(splits, tmp_path))
    assert line.startswith("val: expect_column_values_to_be_in_set(source): 1 of 50 rows")
    assert "['robot']" in line and "['val-80-1']" in line


def test_user_in_two_splits(splits, tmp_path):
    splits["test"].loc[0, "user_id"] = "user3"
    splits["val"].loc[0, "user_id"] = "user3"
    line = only_failure(run(splits, tmp_path))
    assert line == ("splits: expect_column_values_to_be_between(shared_users): "
                    "train/val share 1 user(s) ['user3']; train/test share 1 user(s) ['user3']; "
                    "val/test share 1 user(s) ['user3']")


def test_fractions_out_of_tolerance(splits, tmp_path):
    splits["val"] = pd.concat([splits["val"], frame("val", range(200, 260))], ignore_index=True)
    result = run(splits, tmp_path)
    assert not result.success
    line = only_failure(result)
    assert line.startswith("splits: expect_column_values_to_be_between(abs_deviation): ")
    assert "train has 80 of 160 distinct user_id = 0.500, expected 0.800 ± 0.05" in line
    assert "val has 70 of 160 distinct user_id = 0.438, expected 0.100 ± 0.05" in line
    assert "test" not in line.split(": ", 2)[2]  # test: 10/160 = 0.0625, within tolerance


def test_empty_split_does_not_crash(splits, tmp_path):
    splits["test"] = splits["test"].iloc[0:0]
    line = only_failure(run(splits, tmp_path))
    assert "test has 0 of 90 distinct user_id = 0.000, expected 0.100 ± 0.05" in line
    assert (tmp_path / "docs" / "index.html").is_file()


def test_column_less_frame_reports_schema_only(splits, tmp_path):
    splits["test"] = pd.DataFrame()
    result = run(splits, tmp_path, fraction_tolerance=1.0)
    assert result.failures == [
        "test: expect_table_columns_to_match_ordered_list: missing ['prompt_id', 'user_id', "
        "'org_id', 'created_at', 'source', 'prompt']; observed [], expected ['prompt_id', "
        "'user_id', 'org_id', 'created_at', 'source', 'prompt']"]


def test_data_docs_never_contain_prompt_text(splits, tmp_path):
    """Failures on every prompt-based expectation, yet neither docs nor lines show a prompt."""
    splits["train"].loc[0, "prompt"] = f"{MARKER} {EMAIL}"
    splits["train"].loc[1, "prompt"] = MARKER * 20
    splits["train"].loc[2, "prompt_id"] = splits["train"].loc[3, "prompt_id"]
    splits["train"].loc[4, "user_id"] = None
    splits["val"].loc[0, "prompt"] = ""
    result = run(splits, tmp_path)
    assert len(result.failures) == 5, result.failures
    assert not any(MARKER in f or EMAIL in f for f in result.failures)
    text = docs_text(tmp_path / "docs")
    assert "prompts_train" in text and "pii_free" in text  # the docs are really there
    assert MARKER not in text and EMAIL not in text and "example.com" not in text


def test_rerun_replaces_docs(splits, tmp_path):
    run(splits, tmp_path)
    run(splits, tmp_path)
    runs = list((tmp_path / "docs" / "validations" / "prompts_train").rglob("*.html"))
    assert len(runs) == 1


def test_split_names_must_match_fractions(splits, tmp_path):
    with pytest.raises(ValueError, match="same splits"):
        run(splits, tmp_path, expected_fractions={"train": 0.9, "val": 0.1})


def test_no_network_no_noise(splits, tmp_path, monkeypatch, caplog, capfd):
    attempts = []
    real_connect = socket.socket.connect

    def connect(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            attempts.append(address)
            raise OSError("network disabled in test")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    def create_connection(address, *args, **kwargs):
        attempts.append(address)
        raise OSError("network disabled in test")

    monkeypatch.setattr(socket, "create_connection", create_connection)
    caplog.set_level(logging.INFO)
    assert run(splits, tmp_path).success
    assert attempts == []
    assert not [r for r in caplog.records
                if r.name.startswith("great_expectations") and r.levelno < logging.WARNING]
    out, err = capfd.readouterr()
    assert "Calculating Metrics" not in out + err
