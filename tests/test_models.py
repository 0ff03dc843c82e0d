"""Saving a model's tokenizer, and generation's effect on the tokenizer it is given."""

import json

import pytest
import torch
from tokenizers import Tokenizer
from transformers import AutoTokenizer

from rlhf import models, ppo

LONG = " ".join(["the otter is pink. the coat is red."] * 30)


@pytest.fixture(scope="module")
def tok():
    texts = [models.PROMPT_TEMPLATE.format(prompt="What colour is the otter?") + " pink. " + LONG] * 10
    return models.train_tokenizer(texts, 300)


def tiny_lm(tok, positions: int = 48):
    torch.manual_seed(0)
    return models.new_causal_lm(tok, 1, 2, 16, positions)


def test_a_saved_tokenizer_keeps_none_of_its_last_calls_padding_or_truncation(tok, tmp_path):
    """After generation (left padding, prompts cut to the model's context) and PPO's prompt
    encoding, the saved tokenizer.json holds no padding or truncation, so `tokenizers` reads every
    text whole, and transformers loads the tokenizer with the sides it had before."""
    model = tiny_lm(tok)
    before = tok.padding_side, tok.truncation_side
    models.generate(model, tok, ["What colour is the otter?", LONG], 4, do_sample=False)
    ppo.encode_prompts(tok, ["What colour is the otter?", LONG], 40, "cpu")
    models.save(model, tok, tmp_path / "policy")

    saved = json.loads((tmp_path / "policy" / "tokenizer.json").read_text())
    assert saved["truncation"] is None and saved["padding"] is None
    whole = len(tok(LONG)["input_ids"])
    assert whole > 48
    assert len(Tokenizer.from_file(str(tmp_path / "policy" / "tokenizer.json")).encode(LONG).ids) == whole
    config = json.loads((tmp_path / "policy" / "tokenizer_config.json").read_text())
    assert not {"max_length", "stride", "truncation_strategy"} & set(config)
    loaded = AutoTokenizer.from_pretrained(tmp_path / "policy")
    assert (loaded.padding_side, loaded.truncation_side) == before == ("right", "right")
    assert len(loaded(LONG)["input_ids"]) == whole
    # the tokenizer in memory still pads and truncates as each call asks
    enc = tok(["a", LONG], padding=True, truncation=True, max_length=20)
    assert [len(r) for r in enc["input_ids"]] == [20, 20]


@pytest.mark.parametrize("side", ["left", "right"])
def test_generation_leaves_the_tokenizers_sides_as_it_found_them(tok, side):
    model = tiny_lm(tok)
    tok.padding_side = tok.truncation_side = side
    try:
        out = models.generate(model, tok, ["What colour is the otter?", LONG], 3, do_sample=False)
        ppo.encode_prompts(tok, [LONG], 40, "cpu")
        assert len(out) == 2
        assert (tok.padding_side, tok.truncation_side) == (side, side)
    finally:
        tok.padding_side = tok.truncation_side = "right"
