"""The reward model: the K-way loss against an explicit pair-by-pair loop (values and gradients),
K varying within one batch, ties, the demonstrations-mean-0 shift stored in the weights (or, for
Llama-style models, the config), reward models from several hub families, and the validation
figures (accuracy against ranks, gold and per K; calibration)."""

import copy
import dataclasses
import itertools
import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rlhf import models, reward
from rlhf.losses import kway_ranking_loss, pairwise_accuracy, pairwise_counts


def explicit_loss(rewards: list[torch.Tensor], ranks: list[list[int]]) -> torch.Tensor:
    """The paper's loss, one pair at a time: per prompt the mean of -log sigmoid(r_w - r_l) over
    its ranked pairs, then the mean over prompts that have a pair."""
    per_prompt = []
    for r, k in zip(rewards, ranks):
        losses = [-F.logsigmoid(r[i] - r[j]) for i, j in itertools.permutations(range(len(k)), 2) if k[i] < k[j]]
        if losses:
            per_prompt.append(sum(losses) / len(losses))
    return sum(per_prompt) / len(per_prompt)


def test_kway_loss_equals_the_explicit_pairwise_loss_values_and_gradients():
    torch.manual_seed(0)
    ranks = [[0, 1, 2, 3], [2, 0, 1, 4, 3, 5, 7, 6, 8], [1, 0], [0, 1, 1, 3, 4], [0, 0, 0]]  # K = 4, 9, 2, 5, 3
    leaves = [torch.randn(len(k), requires_grad=True) for k in ranks]
    expected = explicit_loss(leaves, ranks)
    expected.backward()
    want = [torch.zeros(len(x)) if x.grad is None else x.grad.clone() for x in leaves]  # all tied: no grad
    for x in leaves:
        x.grad = None
    padded_ranks, mask = reward.pad_groups(ranks)
    rows = torch.stack([torch.cat([x, torch.zeros(9 - len(x))]) for x in leaves])  # one [B, K_max] batch
    got = kway_ranking_loss(rows, padded_ranks, mask)
    got.backward()
    torch.testing.assert_close(got, expected)
    for x, g in zip(leaves, want):
        torch.testing.assert_close(x.grad, g)


def test_padding_slots_give_no_pair_whatever_their_values():
    rewards = torch.tensor([[1.0, 0.0, 55.0, -9.0]])
    ranks = torch.tensor([[0, 1, 0, 5]])  # the padded slots' ranks would make pairs if counted
    mask = torch.tensor([[True, True, False, False]])
    torch.testing.assert_close(kway_ranking_loss(rewards, ranks, mask), -F.logsigmoid(torch.tensor(1.0)))
    assert pairwise_accuracy(rewards, ranks, mask).item() == 1.0


def test_ties_give_no_pair_and_an_all_tied_prompt_is_left_out_of_the_mean():
    r = torch.tensor([[2.0, 1.0, 1.5], [0.3, -0.2, 4.0]])
    tied = torch.tensor([[0, 1, 1], [0, 0, 0]])  # prompt 2: every response tied
    one = (-F.logsigmoid(r[0, 0] - r[0, 1]) - F.logsigmoid(r[0, 0] - r[0, 2])) / 2
    torch.testing.assert_close(kway_ranking_loss(r, tied), one)
    assert kway_ranking_loss(r[1:], tied[1:]).item() == 0.0


@pytest.fixture(scope="module")
def tiny():
    """A tiny GPT-2 reward model and its tokenizer."""
    from transformers import GPT2Config, GPT2ForSequenceClassification

    tok = models.train_tokenizer(["What is 2 plus 2? 4 5 four apple pear red cat"] * 20, 300)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2, num_labels=1,
                     pad_token_id=tok.pad_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = GPT2ForSequenceClassification(cfg).eval()
    with torch.no_grad():  # a non-zero LayerNorm bias and head, as after training
        model.transformer.ln_f.bias.normal_()
        model.score.weight.normal_()
    return model, tok


def test_k_varying_within_one_batch_is_one_forward_pass_with_the_same_rewards(tiny):
    model, tok = tiny
    prompts = ["What is 2 plus 2?", "Name a fruit", "Name a colour"]
    responses = [["4", "5"], ["apple", "pear", "red cat", "four"], ["red", "cat", "apple"]]
    ranks = [[0, 1], [0, 1, 2, 3], [1, 0, 2]]
    batch = reward.group_batch(tok, prompts, responses, ranks, 64)
    assert batch["input_ids"].shape[0] == 9  # every response once, no padded sequence
    assert batch["mask"].tolist() == [[True, True, False, False], [True] * 4, [True, True, True, False]]
    calls = []
    hook = model.register_forward_hook(lambda m, a, out: calls.append(1))
    with torch.no_grad():
        r = reward.rewards(model, batch)
    hook.remove()
    assert len(calls) == 1 and r.shape == (3, 4)
    alone = [[reward.score(model, tok, [p], [x])[0] for x in rs] for p, rs in zip(prompts, responses)]
    for row, want in zip(r, alone):
        torch.testing.assert_close(row[:len(want)], torch.tensor(want), atol=1e-5, rtol=1e-5)
    # scoring sorts every response by length and batches the rows: the groups come back as given
    for size in (1, 2, 4, 128):
        got = reward.group_rewards(model, tok, prompts, responses, batch_size=size)
        assert [len(g) for g in got] == [len(rs) for rs in responses]
        for g, want in zip(got, alone):
            assert g == pytest.approx(want, abs=1e-5)
    assert r[0, 2:].abs().sum() == 0 and r[2, 3] == 0
    loss, stats = reward.kway_loss(model, batch)
    assert torch.isfinite(loss) and 0 <= stats["rm/train_accuracy"] <= 1


def test_shift_makes_demonstrations_mean_0_and_survives_a_plain_load(tiny, tmp_path):
    import copy

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, tok = tiny
    model = copy.deepcopy(model)
    prompts, demos = ["What is 2 plus 2?", "Name a fruit", "Name a colour"], ["4", "apple", "red"]
    other = ["5", "pear cat", "four"]
    before = reward.score(model, tok, prompts, demos)
    before_other = reward.score(model, tok, prompts, other)
    shift = reward.center_on(model, tok, prompts, demos)
    assert shift == pytest.approx(sum(before) / len(before))
    after = reward.score(model, tok, prompts, demos)
    assert abs(sum(after) / len(after)) < 1e-5
    # every reward moves by exactly the shift: differences (and so the loss) are unchanged
    torch.testing.assert_close(torch.tensor(reward.score(model, tok, prompts, other)),
                               torch.tensor(before_other) - shift, atol=1e-5, rtol=0)
    models.save(model, tok, tmp_path / "rm")
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", num_labels=1)
    assert loaded.config.rlhf_reward_shift == pytest.approx(shift)
    again = reward.score(loaded, AutoTokenizer.from_pretrained(tmp_path / "rm"), prompts, demos)
    torch.testing.assert_close(torch.tensor(again), torch.tensor(after), atol=1e-5, rtol=0)


def test_shift_uses_the_head_bias_where_there_is_one():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                                     num_attention_heads=2, intermediate_size=32,
                                                     num_labels=1)).eval()
    ids = torch.randint(0, 50, (3, 7))
    before = model(input_ids=ids).logits.squeeze(-1)
    reward.shift_rewards(model, 0.75)
    torch.testing.assert_close(model(input_ids=ids).logits.squeeze(-1), before - 0.75)
    assert model.config.rlhf_reward_shift == 0.75


def causal_lm_checkpoint(family: str, path, tok, texts: list[str] = (), steps: int = 0, seed: int = 0,
                         context: int = 96, tied: bool = False):
    """A tiny causal LM of a hub family (`gpt_neox`, `opt`, `llama`, `qwen2`) with a context of
    `context` tokens, saved with `tok` the way hub checkpoints of these families often come (no pad
    token in the config), after `steps` steps of language modelling on `texts`; `tied`: Llama's and
    Qwen2's LM head is the input embeddings (Llama 3.2 1B, Qwen2.5 0.5B)."""
    from transformers import (GPTNeoXConfig, GPTNeoXForCausalLM, LlamaConfig, LlamaForCausalLM, OPTConfig,
                              OPTForCausalLM, Qwen2Config, Qwen2ForCausalLM)

    torch.manual_seed(seed)
    ids = dict(vocab_size=len(tok), eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id)
    llama_like = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=2, max_position_embeddings=context, tie_word_embeddings=tied, **ids)
    model = {
        "gpt_neox": lambda: GPTNeoXForCausalLM(GPTNeoXConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
            max_position_embeddings=context, **ids)),
        "opt": lambda: OPTForCausalLM(OPTConfig(hidden_size=32, ffn_dim=64, num_hidden_layers=1,
                                                num_attention_heads=2, word_embed_proj_dim=32,
                                                max_position_embeddings=context, **ids)),
        "llama": lambda: LlamaForCausalLM(LlamaConfig(**llama_like)),
        "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**llama_like)),
    }[family]()
    model.config.pad_token_id = None
    if steps:
        blocks = tok("\n".join(texts), return_tensors="pt")["input_ids"][0]
        blocks = blocks[: len(blocks) // 64 * 64].view(-1, 64)
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
        for _ in range(steps):
            batch = blocks[torch.randint(len(blocks), (8,))]
            model(input_ids=batch, labels=batch).loss.backward()
            opt.step()
            opt.zero_grad()
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


# the shift lives in the weights where a bias can carry it (after the final LayerNorm), else in the config
FAMILIES = {"gpt_neox": "weights", "opt": "weights", "llama": "config", "qwen2": "config"}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_reward_model_from_each_family_trains_shifts_and_loads(family, tiny, tmp_path):
    from transformers import AutoModelForSequenceClassification

    _, tok = tiny
    sft = causal_lm_checkpoint(family, tmp_path / "sft", tok)
    model = reward.from_sft(sft)
    model.config.pad_token_id = tok.pad_token_id
    with torch.no_grad():
        model.score.weight.normal_()
    prompts, demos = ["What is 2 plus 2?", "Name a fruit", "Name a colour"], ["4", "apple", "red"]
    batch = reward.group_batch(tok, prompts, [["4", "5"], ["apple", "pear", "cat"], ["red", "cat"]],
                               [[0, 1], [0, 1, 2], [1, 0]], 64)
    loss, _ = reward.kway_loss(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and model.score.weight.grad.abs().sum() > 0
    model.eval()
    shift = reward.center_on(model, tok, prompts, demos)
    after = reward.score(model, tok, prompts, demos)
    assert abs(sum(after) / len(after)) < 1e-5
    models.save(model, tok, tmp_path / "rm")
    loaded = reward.load(tmp_path / "rm")
    assert loaded.config.rlhf_reward_shift == pytest.approx(shift)
    torch.testing.assert_close(torch.tensor(reward.score(loaded, tok, prompts, demos)), torch.tensor(after),
                               atol=1e-5, rtol=0)
    # a plain transformers load: the shift is in the weights, or (no bias after an RMSNorm) in the config
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", num_labels=1).eval()
    enc = [reward.group_batch(tok, [p], [[d]], None, 64) for p, d in zip(prompts, demos)]
    raw = [plain(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits.item() for b in enc]
    offset = getattr(plain.config, reward.OFFSET_KEY, 0.0)
    assert offset == (pytest.approx(shift) if FAMILIES[family] == "config" else 0.0)
    assert raw == pytest.approx([a + offset for a in after], abs=1e-5)


def test_load_config_sets_every_dropout_field_the_family_has(tiny, tmp_path, monkeypatch):
    model, tok = tiny
    model.save_pretrained(tmp_path / "gpt2")
    cfg = models.load_config(tmp_path / "gpt2", dropout=0.2)
    assert (cfg.resid_pdrop, cfg.embd_pdrop, cfg.attn_pdrop) == (0.2, 0.2, 0.2)
    assert models.load_config(tmp_path / "gpt2").resid_pdrop == 0.0  # no dropout given: as saved
    llama = models.load_config(causal_lm_checkpoint("llama", tmp_path / "llama", tok), dropout=0.2, num_labels=1)
    assert llama.attention_dropout == 0.2 and llama.num_labels == 1
    neox = models.load_config(causal_lm_checkpoint("gpt_neox", tmp_path / "neox", tok), dropout=0.1)
    assert (neox.hidden_dropout, neox.attention_dropout) == (0.1, 0.1)
    monkeypatch.setattr(models, "DROPOUT_FIELDS", ())
    assert models.load_config(tmp_path / "gpt2", dropout=0.0).resid_pdrop == 0.0
    with pytest.raises(ValueError, match="gpt2 config has no dropout field to set to 0.2"):
        models.load_config(tmp_path / "gpt2", dropout=0.2)


def test_validation_metrics_by_ranks_gold_and_k():
    rewards = [[3.0, 2.0, 1.0, 0.0], [0.0, 1.0], [1.0, 2.0, 0.5, 0.1]]
    ranks = [[0, 1, 2, 3], [0, 1], [0, 1, 2, 2]]         # prompt 3: a tie, 5 ranked pairs
    gold = [[0.9, 0.5, 0.5, 0.1], [0.2, 0.8], None]      # equal gold: no pair; prompt 3: no gold
    m = reward.validation_metrics(rewards, ranks, gold)
    assert m["rm/val_pairs"] == 6 + 1 + 5
    assert m["rm/val_accuracy"] == pytest.approx((6 + 0 + 4) / 12)
    assert m["rm/val_accuracy_gold"] == pytest.approx((5 + 1) / 6)  # 5 gold pairs in prompt 1, 1 in prompt 2
    assert m["rm/val_accuracy/k2"] == 0.0 and m["rm/val_accuracy/k4"] == pytest.approx(10 / 11)


def test_validation_against_the_labelers_own_agreement_measured_and_expected():
    from rlhf import comparisons

    gold = [[0.9, 0.5, 0.1], [0.2, 0.8]]
    ranks = [[0, 2, 1], [0, 1]]                        # the labeler got two of the four gold pairs wrong
    rewards = [[3.0, 1.0, 2.0], [0.0, 1.0]]            # the RM follows the labeler in the first, gold in the second
    m = reward.validation_metrics(rewards, ranks, gold, noise=0.3)
    assert m["rm/val_accuracy"] == pytest.approx(3 / 4) and m["rm/val_labeler_gold_agreement"] == pytest.approx(2 / 4)
    assert m["rm/val_labeler_shortfall"] == pytest.approx(2 / 4 - 3 / 4)
    assert m["rm/val_expected_ceiling"] == pytest.approx(comparisons.expected_agreement(gold, 0.3))
    assert m["rm/val_expected_accuracy"] == pytest.approx(comparisons.expected_ranker_agreement(gold, rewards, 0.3))
    assert m["rm/val_expected_shortfall"] == pytest.approx(m["rm/val_expected_ceiling"] - m["rm/val_expected_accuracy"])
    assert m["rm/val_expected_shortfall"] > 0                    # it inverts a gold pair: the expectation sees it
    assert not [k for k in m if k.endswith(("_lo", "_hi"))]  # no bootstrap asked for
    # with a bootstrap over the prompts: seeded intervals that hold the pooled figures
    many = dict(rewards_=rewards * 20, ranks=ranks * 20, gold=gold * 20)
    many["rewards_"][0] = [1.0, 2.0, 3.0]                    # one prompt ordered against gold and the labeler
    b = reward.validation_metrics(**many, noise=0.3, bootstrap=500, seed=1)
    assert b == reward.validation_metrics(**many, noise=0.3, bootstrap=500, seed=1)
    for key in ("rm/val_labeler_shortfall", "rm/val_expected_shortfall"):
        assert b[f"{key}_lo"] < b[key] < b[f"{key}_hi"]
    assert b["rm/val_labeler_shortfall"] == pytest.approx(b["rm/val_labeler_gold_agreement"] - b["rm/val_accuracy"])
    one = reward.shortfall_intervals(many["rewards_"][:1], ranks[:1], gold[:1], 0.3, 100, seed=0)
    # that prompt alone: the labeler keeps 2 of its 3 gold pairs, the RM orders 1 of 3 as the labeler does
    assert one["rm/val_labeler_shortfall_lo"] == one["rm/val_labeler_shortfall_hi"] == pytest.approx(2 / 3 - 1 / 3)
    # a ranking that ties two responses of distinct gold (not the simulated labeler's): the measured
    # figure's two agreements count other pairs, so only the expected one gets an interval
    edited = reward.shortfall_intervals([[3.0, 1.0, 2.0]], [[0, 1, 1]], [gold[0]], 0.3, 100, seed=0)
    assert sorted(edited) == ["rm/val_expected_shortfall_hi", "rm/val_expected_shortfall_lo"]
    # without the labeler's noise (imported rankings), or where a group has no gold: none of them
    for kwargs in ({"gold": gold}, {"gold": [gold[0], None], "noise": 0.3}):
        got = reward.validation_metrics(rewards, ranks, **kwargs)
        assert not [k for k in got if "labeler" in k or "expected" in k]


def test_validation_of_imported_rankings_without_gold_gives_no_gold_figures():
    m = reward.validation_metrics([[2.0, 1.0], [0.0, 1.0, 3.0]], [[0, 1], [2, 1, 0]], [None, None],
                                  prompts=["Write a poem", "Explain a mutex"])
    assert m["rm/val_accuracy"] == 1.0 and m["rm/val_pairs"] == 4
    assert not [k for k in m if "gold" in k]


def test_validation_gold_accuracy_per_task_family():
    prompts = ["What is 2 plus 3?", "Reverse the words: red apple", "What is 4 plus 4?", "hello there", "?"]
    rewards = [[1.0, 0.0], [0.0, 1.0, 2.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    ranks = [[0, 1], [0, 1, 2], [0, 1], [0, 1], [0, 1]]
    gold = [[1.0, 0.4], [1.0, 0.5, 0.5], [1.0, 0.4], [0.9, 0.1], None]  # the last prompt: imported, no gold
    m = reward.validation_metrics(rewards, ranks, gold, prompts=prompts)
    assert m["rm/val_accuracy_gold/arithmetic"] == 0.5   # one of its two gold pairs right
    assert m["rm/val_accuracy_gold/reverse"] == 0.0      # two pairs, both wrong; the 0.5 tie gives none
    assert m["rm/val_accuracy_gold/other"] == 1.0
    assert not any(k.startswith("rm/val_accuracy_gold/") for k in reward.validation_metrics(rewards, ranks, gold))


def test_calibration_bins():
    rows = reward.calibration([[2.0, 0.0], [0.0, 0.1], [0.0, 0.1]], [[0, 1], [0, 1], [1, 0]], bins=5)
    assert [r["pairs"] for r in rows] == [2, 1]
    assert rows[0]["observed"] == 0.5 and rows[0]["bin_low"] == 0.5
    assert rows[1]["predicted"] == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item())
    assert rows[1]["observed"] == 1.0


def test_validation_without_a_ranked_pair_is_an_error():
    with pytest.raises(ValueError, match="cannot be validated"):
        reward.validation_metrics([[0.1, 0.2]], [[0, 0]], [[0.5, 0.5]])


def test_a_reward_tie_counts_as_given():
    rewards, ranks = torch.tensor([[1.0, 1.0, 0.0]]), torch.tensor([[0, 1, 2]])  # pairs: tie, right, right
    assert [float(x) for x in pairwise_counts(rewards, ranks)] == [2.0, 3.0]
    assert [float(x) for x in pairwise_counts(rewards, ranks, tie_credit=0.5)] == [2.5, 3.0]


def test_response_logprobs_match_a_one_by_one_computation():
    from transformers import GPT2Config, GPT2LMHeadModel

    from rlhf import lm

    tok = models.train_tokenizer(["What is 2 plus 2? 4 5 four apple pear red cat"] * 20, 300)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                       pad_token_id=tok.pad_token_id)).eval()
    # the longest first: batches are formed by length and the results come back in the order given
    prompts, responses = ["Name a fruit please", "What is 2 plus 2?", "Name a colour"], ["apple pear red cat", "4", "red"]
    wants = []
    for p, r in zip(prompts, responses):
        prompt_ids = tok(models.format_prompt(tok, p), add_special_tokens=False)["input_ids"]
        response_ids = tok(" " + r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        with torch.no_grad():
            logp = model(input_ids=torch.tensor([prompt_ids + response_ids])).logits[0].log_softmax(-1)
        wants.append(sum(logp[len(prompt_ids) + i - 1, t].item() for i, t in enumerate(response_ids)))
    for batch_size in (1, 2, 64):  # 64: one left-padded batch
        assert lm.response_logprobs(model, tok, prompts, responses, batch_size) == pytest.approx(wants, abs=1e-4)


def test_baselines_rank_by_length_and_by_the_sft_models_likelihood(monkeypatch):
    from rlhf import lm

    # the stand-in SFT likes "b" responses: the log-prob baseline orders by that, length by words
    monkeypatch.setattr(lm, "response_logprobs", lambda m, t, ps, rs: [-1.0 if "b" in r else -5.0 for r in rs])
    responses = [["a a a", "b"], ["b b", "a", "a"]]
    ranks, gold = [[1, 0], [0, 1, 1]], [[0.1, 0.9], [1.0, 0.5, 0.5]]
    m = reward.baseline_metrics(None, None, ["p", "q"], responses, ranks, gold)
    assert m["rm/baseline/sft_logprob/val_accuracy"] == 1.0 and m["rm/baseline/sft_logprob/val_accuracy_gold"] == 1.0
    assert m["rm/baseline/length/val_accuracy"] == pytest.approx(2 / 3)  # pair 1 wrong, prompt 2 right twice
    assert set(m) == {f"rm/baseline/{n}/{k}" for n in reward.BASELINES for k in ("val_accuracy", "val_accuracy_gold")}


# -- the likelihood reward model (reward_model.likelihood_coef > 0) ----------------------------------

def test_response_mask_starts_after_the_last_marker_and_stops_at_padding():
    from rlhf.likelihood_reward import response_mask

    marker, pad = [7, 8], 0
    ids = torch.tensor([[1, 7, 8, 3, 4, pad],     # one marker: the response is 3, 4
                        [7, 8, 5, 7, 8, 6],       # two: the response starts after the last
                        [1, 2, 3, 4, pad, pad],   # none: every real token after the first
                        [1, 7, 8, pad, 7, 8]])    # a marker in the padding does not count
    attn = (ids != pad).long()
    attn[3, 3:] = 0
    got = response_mask(ids, attn, marker).int().tolist()
    assert got == [[0, 0, 0, 1, 1, 0], [0, 0, 0, 0, 0, 1], [0, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0]]


@pytest.fixture(scope="module")
def template_tok():
    """A tokenizer that has seen the prompt template."""
    prompt = models.PROMPT_TEMPLATE.format(prompt="What is 2 plus 2?")
    texts = [prompt + " 4 5 four apple pear red cat Name a fruit colour"] * 20
    return models.train_tokenizer(texts, 300)


def lm_checkpoint(family: str, path, tok):
    """A tiny LM with tied embeddings (as pretrain makes GPT-2, and Llama 3.2 1B and Qwen2.5 0.5B
    come) saved as the SFT stage saves one."""
    if family != "gpt2":
        return causal_lm_checkpoint(family, path, tok, tied=True)
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                               pad_token_id=tok.pad_token_id)).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def likelihood_rm(family: str, tok, tmp_path, coef: float = 0.3):
    """(the SFT checkpoint, a likelihood reward model from it in eval mode, padding as the stage sets it)."""
    sft = lm_checkpoint(family, tmp_path / "sft", tok)
    model = reward.from_sft(sft, coef).eval()
    model.config.pad_token_id = tok.pad_token_id
    return sft, model


PROMPTS = ["What is 2 plus 2?", "Name a fruit", "Name a colour"]
DEMOS, OTHER = ["4", "apple", "red"], ["5 four", "pear cat", "four"]
LIKELIHOOD_FAMILIES = ["gpt2", "llama", "qwen2"]


@pytest.mark.parametrize("family", LIKELIHOOD_FAMILIES)
def test_likelihood_reward_is_the_head_plus_c_times_the_response_log_likelihood(family, template_tok, tmp_path):
    from rlhf import lm

    tok = template_tok
    sft, model = likelihood_rm(family, tok, tmp_path)
    assert model.config.rlhf_response_marker == tok("\nResponse:", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        model.score.weight.normal_()
        model.score.bias.fill_(0.25)
    got = reward.score(model, tok, PROMPTS, OTHER)  # one right-padded batch
    # the head alone, as transformers' own class of the family reads it, and the LM's
    # log-likelihood of each response
    plain_cls = type(model).__bases__[1]
    assert plain_cls.__name__.endswith("ForSequenceClassification")
    plain_cfg = type(model.config).__bases__[0](**{k: v for k, v in model.config.to_dict().items() if k != "model_type"})
    head = plain_cls(plain_cfg).eval()
    head.load_state_dict({k: v for k, v in model.state_dict().items() if k != "score.bias"}, strict=False)
    plain = [s + 0.25 for s in reward.score(head, tok, PROMPTS, OTHER)]
    ll = lm.response_logprobs(models.load_causal_lm(sft).eval(), tok, PROMPTS, OTHER)
    assert got == pytest.approx([h + 0.3 * x for h, x in zip(plain, ll)], abs=1e-4)
    assert min(abs(x) for x in ll) > 1  # the term is there, not a rounding error
    # the ranking loss trains the trunk through the likelihood term as well as through the head
    batch = reward.group_batch(tok, PROMPTS, [[d, o] for d, o in zip(DEMOS, OTHER)], [[0, 1]] * 3, 64)
    reward.kway_loss(model, batch)[0].backward()
    assert model.get_input_embeddings().weight.grad.abs().sum() > 0 and model.score.bias.grad is not None


@pytest.mark.parametrize("family", LIKELIHOOD_FAMILIES)
def test_lm_coef_adds_the_mean_token_loss_of_each_prompts_best_ranked_responses(family, template_tok, tmp_path):
    from rlhf import data, lm

    tok = template_tok
    sft, model = likelihood_rm(family, tok, tmp_path)
    # K varies within the batch; the second prompt's two responses tie at the top, so both count
    responses = [[DEMOS[0], OTHER[0], "four"], [DEMOS[1], OTHER[1]], [OTHER[2], DEMOS[2]]]
    ranks = [[1, 0, 2], [0, 0], [1, 0]]
    best = [(PROMPTS[0], OTHER[0]), (PROMPTS[1], DEMOS[1]), (PROMPTS[1], OTHER[1]), (PROMPTS[2], DEMOS[2])]
    batch = reward.group_batch(tok, PROMPTS, responses, ranks, 64)
    ranking, stats = reward.kway_loss(model, batch)
    assert "rm/lm_loss" not in stats
    total, stats = reward.kway_loss(model, batch, lm_coef=0.7)
    # the causal LM's own next-token loss on each best response (its tokens and EOS), averaged
    # over its tokens, then over the best responses
    causal = models.load_causal_lm(sft).eval()
    per_token = [-lm.response_logprobs(causal, tok, [p], [r])[0]
                 / sum(x != data.IGNORE for x in data.encode_pairs(tok, [p], [r], 64)[0]["labels"]) for p, r in best]
    expected = sum(per_token) / len(per_token)
    assert stats["rm/lm_loss"] == pytest.approx(expected, rel=1e-4)
    assert total.item() == pytest.approx(ranking.item() + 0.7 * expected, rel=1e-4)


@pytest.mark.parametrize("family", [None, *LIKELIHOOD_FAMILIES])  # None: the paper's head
def test_kway_loss_by_length_groups_equals_one_pass_and_reads_less_padding(family, tiny, template_tok, tmp_path):
    """reward_model.length_groups: a batch's responses sorted by length and run as G passes, each
    cut to its own rows' width, give the one-pass loss, stats (the LM loss on the best-ranked
    responses too) and gradients; each pass is no wider than its longest row."""
    if family is None:
        model, tok = copy.deepcopy(tiny)
        lm_coef = 0.0
    else:
        tok, lm_coef = template_tok, 0.7
        _, model = likelihood_rm(family, tok, tmp_path)
    responses = [[DEMOS[0], OTHER[0], "four apple pear red cat", "5"], [DEMOS[1], OTHER[1]],
                 [OTHER[2], "red cat apple", DEMOS[2]]]  # K = 4, 2, 3
    batch = reward.group_batch(tok, PROMPTS, responses, [[1, 0, 2, 3], [0, 0], [1, 0, 2]], 64)
    lengths = sorted(batch["attention_mask"].sum(-1).tolist(), reverse=True)
    assert len(set(lengths)) > 2
    widths: list[int] = []
    model.register_forward_pre_hook(lambda m, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                    with_kwargs=True)

    def loss_and_grads(groups: int):
        model.zero_grad()
        widths.clear()
        loss, stats = reward.kway_loss(model, batch, lm_coef=lm_coef, groups=groups)
        loss.backward()
        return loss.detach(), stats, [p.grad.clone() for p in model.parameters() if p.grad is not None]

    ref, ref_stats, ref_g = loss_and_grads(1)
    assert widths == [batch["input_ids"].shape[1]] and ("rm/lm_loss" in ref_stats) == bool(lm_coef)
    for groups in (2, 3, 20):  # 20 > rows: the empty parts are skipped
        loss, stats, grads = loss_and_grads(groups)
        torch.testing.assert_close(loss, ref)
        assert stats == pytest.approx(ref_stats, rel=1e-5)
        assert len(grads) == len(ref_g)
        for g, r in zip(grads, ref_g):
            torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-4)
        parts = [p.tolist() for p in torch.tensor(lengths).tensor_split(groups) if len(p)]
        assert widths == [p[0] for p in parts]  # each pass as wide as its longest row


def test_training_adds_the_lm_loss_by_reward_model_lm_coef(template_tok, tmp_path):
    from rlhf import train

    tok = template_tok
    sft, table, c = ranking_setup(tok, tmp_path)
    histories = {}
    for lm_coef in (0.0, 1.0):
        train.set_seed(0)
        model = reward.from_sft(sft, 0.15)
        model.config.pad_token_id = tok.pad_token_id
        histories[lm_coef] = reward.train(model, tok, table, dataclasses.replace(c, lm_coef=lm_coef), 0,
                                          train.accelerator("cpu"))
    assert all("rm/lm_loss" not in row for row in histories[0.0])
    assert all(row["rm/lm_loss"] > 0 for row in histories[1.0])
    assert histories[1.0][0]["rm/loss"] > histories[0.0][0]["rm/loss"]  # the same first batch, plus the LM loss


def test_the_weight_average_is_the_element_wise_mean_in_each_tensor_dtype():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor([2, 4])}
    b = {"w": torch.tensor([3.0, 6.0]), "n": torch.tensor([4, 8])}
    out = reward.average_states([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and torch.equal(out["n"], torch.tensor([3, 6]))
    assert reward.average_states([a])["w"] is not a["w"] and torch.equal(reward.average_states([a])["w"], a["w"])


def ranking_setup(tok, tmp_path, **changes):
    """A gpt2 SFT checkpoint, a three-prompt rankings table and the project's reward_model params."""
    import pandas as pd

    from rlhf import config

    sft = lm_checkpoint("gpt2", tmp_path / "sft", tok)
    table = pd.DataFrame({"prompt": PROMPTS, "responses": [[d, o] for d, o in zip(DEMOS, OTHER)],
                          "ranks": [[0, 1]] * 3})
    c = config.load("reward_model", Path(__file__).resolve().parents[1] / "params.yaml")
    return sft, table, dataclasses.replace(c, batch_size=2, **changes)


def test_averaged_reward_model_is_the_mean_of_members_trained_with_successive_seeds(template_tok, tmp_path):
    from rlhf import train

    tok = template_tok
    sft, table, c = ranking_setup(tok, tmp_path, average_seeds=3)
    logged = []
    model, history, members = reward.train_averaged(sft, tok, table, c, 5, train.accelerator("cpu"),
                                                    on_step=lambda s, row: logged.append((s, row["rm/member"])))
    singles = []
    for seed in (5, 6, 7):  # each member as a single reward model of its seed
        train.set_seed(seed)
        one = reward.from_sft(sft, c.likelihood_coef)
        one.config.pad_token_id = tok.pad_token_id
        reward.train(one, tok, table, c, seed, train.accelerator("cpu"))
        singles.append(one.state_dict())
    again, rows = reward.train_one(sft, tok, table, c, 7, train.accelerator("cpu"))  # the same, in one call
    assert rows and torch.equal(again.state_dict()["score.weight"], singles[-1]["score.weight"])
    for got, want in zip(members, singles):
        for k in want:
            torch.testing.assert_close(got[k], want[k])
    assert not torch.equal(members[0]["score.weight"], members[1]["score.weight"])
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, sum(m[k] for m in members) / 3)
    steps = reward.train_steps(len(table), c)
    assert logged == [(i * steps + s, float(i)) for i in range(3) for s in range(steps)]
    assert [row["rm/member"] for row in history] == [float(i) for i in range(3) for _ in range(steps)]
    # one seed: the single model, not an average
    one, _, members = reward.train_averaged(sft, tok, table, dataclasses.replace(c, average_seeds=1), 5,
                                            train.accelerator("cpu"))
    assert len(members) == 1
    for k, v in one.state_dict().items():
        torch.testing.assert_close(v, singles[0][k])


@pytest.mark.parametrize("family", [None, *LIKELIHOOD_FAMILIES])  # None: the paper's head
def test_activation_checkpointing_trains_the_same_reward_model(family, template_tok, tmp_path):
    """reward_model.activation_checkpointing: the trunk's layers run again in each backward pass,
    and the losses and the reward model trained are those without it."""
    from rlhf import train

    tok = template_tok
    _, table, c = ranking_setup(tok, tmp_path)
    sft = lm_checkpoint(family or "gpt2", tmp_path / "sft_family", tok)
    runs = {}
    for on in (False, True):
        train.set_seed(0)
        model = reward.from_sft(sft, 0.15 if family else 0.0)
        model.config.pad_token_id = tok.pad_token_id
        calls = []
        next(m for name, m in model.named_modules() if name.endswith("mlp")).register_forward_pre_hook(
            lambda *args: calls.append(1))
        history = reward.train(model, tok, table, dataclasses.replace(c, activation_checkpointing=on), 0,
                               train.accelerator("cpu"))
        runs[on] = [h["rm/loss"] for h in history], model.state_dict(), len(calls)
    (losses, weights, calls), (losses_on, weights_on, calls_on) = runs[False], runs[True]
    assert calls == reward.train_steps(len(table), c) and calls_on == 2 * calls
    assert losses_on == pytest.approx(losses, rel=1e-6)
    for k, v in weights.items():
        torch.testing.assert_close(weights_on[k], v)


@pytest.mark.parametrize("family", [None, *LIKELIHOOD_FAMILIES])  # None: the paper's head
def test_lora_trains_the_head_in_full_and_low_rank_updates_of_the_trunk(family, template_tok, tmp_path):
    """reward_model.lora: the scalar head (new, and small) trains in full, the trunk's linear layers
    by updates of rank <= r, nothing else moves (embeddings, norms); the model comes back as its
    own class and saves and loads as any reward model."""
    from rlhf import config, train

    tok = template_tok
    _, table, c = ranking_setup(tok, tmp_path)
    c = dataclasses.replace(c, lr=1e-2, lora=config.LoraConfig(rank=2, alpha=4.0, dropout=0.0,
                                                                 target_modules="all-linear"))
    sft = lm_checkpoint(family or "gpt2", tmp_path / "sft_family", tok)
    train.set_seed(0)
    model = reward.from_sft(sft, 0.15 if family else 0.0)
    model.config.pad_token_id = tok.pad_token_id
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cls = type(model)
    history = reward.train(model, tok, table, c, 0, train.accelerator("cpu"))
    assert history[-1]["rm/loss"] < history[0]["rm/loss"]
    after = model.state_dict()
    assert type(model) is cls and sorted(after) == sorted(before)
    changed = {k for k in before if not torch.equal(after[k], before[k])}
    heads = {k for k in before if k.startswith("score.")}  # a bias has no gradient: the loss takes differences
    assert "score.weight" in changed
    trunk = changed - heads
    assert trunk and all(k.endswith(".weight") and (".attn." in k or ".mlp." in k or "_proj" in k) for k in trunk)
    assert not any("emb" in k or "wte" in k or "norm" in k or "ln_" in k for k in changed)
    for k in trunk:
        assert torch.linalg.matrix_rank((after[k] - before[k]).float()) <= 2, k
    reward.save(model, tok, tmp_path / "rm")
    loaded = reward.load(tmp_path / "rm")
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, after[k])


def test_averaged_training_resumes_after_a_kill_with_the_same_weights(template_tok, tmp_path):
    from rlhf import train

    tok = template_tok
    sft, table, c = ranking_setup(tok, tmp_path, average_seeds=2)
    want, _, _ = reward.train_averaged(sft, tok, table, c, 0, train.accelerator("cpu"))

    class Killed(Exception):
        pass

    def kill_in_member_1(step, row):
        if row["rm/member"] == 1.0:
            raise Killed

    ckpt = tmp_path / "ckpt"
    with pytest.raises(Killed):
        reward.train_averaged(sft, tok, table, c, 0, train.accelerator("cpu"), on_step=kill_in_member_1,
                              checkpoint_dir=ckpt, checkpoint_every=1, run_id="r")
    assert (ckpt / "member0.pt").exists() and not (ckpt / "member1.pt").exists()
    trained = []
    got, history, _ = reward.train_averaged(sft, tok, table, c, 0, train.accelerator("cpu"),
                                            on_step=lambda s, row: trained.append(row["rm/member"]),
                                            checkpoint_dir=ckpt, checkpoint_every=1, run_id="r")
    assert set(trained) == {1.0}  # member 0 was finished and is not trained again
    assert [row["rm/member"] for row in history].count(0.0) == reward.train_steps(len(table), c)
    for k, v in want.state_dict().items():
        torch.testing.assert_close(got.state_dict()[k], v)
    # another run id trains member 0 again rather than reading a stale file
    trained.clear()
    reward.train_averaged(sft, tok, table, c, 0, train.accelerator("cpu"),
                          on_step=lambda s, row: trained.append(row["rm/member"]), checkpoint_dir=ckpt, run_id="other")
    assert 0.0 in trained


def test_lm_coef_needs_the_likelihood_reward_model(template_tok, tmp_path):
    tok = template_tok
    model = reward.from_sft(lm_checkpoint("gpt2", tmp_path / "sft", tok))  # the paper's head
    model.config.pad_token_id = tok.pad_token_id
    batch = reward.group_batch(tok, PROMPTS, [[d, o] for d, o in zip(DEMOS, OTHER)], [[0, 1]] * 3, 64)
    with pytest.raises(ValueError, match="lm_coef 0.5 needs a likelihood reward model"):
        reward.kway_loss(model, batch, lm_coef=0.5)


@pytest.mark.parametrize("family", LIKELIHOOD_FAMILIES)
def test_likelihood_reward_shifts_in_its_bias_and_loads_with_transformers(family, template_tok, tmp_path):
    from transformers import AutoModelForSequenceClassification

    tok = template_tok
    _, model = likelihood_rm(family, tok, tmp_path)
    with torch.no_grad():
        model.score.weight.normal_()
    before_other = reward.score(model, tok, PROMPTS, OTHER)
    shift = reward.center_on(model, tok, PROMPTS, DEMOS)  # into the head's bias: the final norm feeds the LM head too
    assert model.score.bias.item() == pytest.approx(-shift) and not hasattr(model.config, reward.OFFSET_KEY)
    after = reward.score(model, tok, PROMPTS, DEMOS)
    assert abs(sum(after) / len(after)) < 1e-5
    assert reward.score(model, tok, PROMPTS, OTHER) == pytest.approx([b - shift for b in before_other], abs=1e-5)
    models.save(model, tok, tmp_path / "rm")
    assert (tmp_path / "rm" / "likelihood_reward.py").exists()
    loaded = reward.load(tmp_path / "rm")
    assert type(loaded) is type(model)
    # its config is handed to AutoTokenizer: no warning about a model type transformers does not know
    # (transformers' handler writes to the stderr it found first, so the records are read here)
    warned = []
    hook = logging.Handler(logging.WARNING)
    hook.emit = lambda record: warned.append(record.getMessage())
    logging.getLogger("transformers").addHandler(hook)
    try:
        loaded_tok = models.load_tokenizer(tmp_path / "rm")
    finally:
        logging.getLogger("transformers").removeHandler(hook)
    assert not [m for m in warned if "model of type" in m]
    assert reward.score(loaded, loaded_tok, PROMPTS, DEMOS) == pytest.approx(after, abs=1e-5)
    remote = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", num_labels=1,
                                                                trust_remote_code=True).eval()
    assert type(remote).__name__ == type(model).__name__
    assert reward.score(remote, tok, PROMPTS, DEMOS) == pytest.approx(after, abs=1e-5)
    # without the code, transformers refuses: it never silently loads the head alone
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", num_labels=1, trust_remote_code=False)


def plain_batch(tok, prompts: list[str], responses: list[str], side: str | None = None) -> dict:
    """The (prompt, response) rows as a user of transformers alone would tokenize them: each the
    template's prompt, a space, the response and EOS, padded on the tokenizer's own side or on
    `side` (then by a copy of `tok`: a padded call leaves its state in the tokenizer, which saving
    it would keep)."""
    if side is not None:
        tok = copy.deepcopy(tok)
        tok.padding_side = side
    return tok([models.format_prompt(tok, p) + " " + r + tok.eos_token for p, r in zip(prompts, responses)],
               return_tensors="pt", padding=True)


@pytest.mark.parametrize("family", LIKELIHOOD_FAMILIES)
def test_likelihood_reward_is_the_same_on_either_padding_side(family, template_tok, tmp_path):
    tok = template_tok
    _, model = likelihood_rm(family, tok, tmp_path)
    with torch.no_grad():
        model.score.weight.normal_()
    want = reward.score(model, tok, PROMPTS, OTHER)  # this project's path: right padding
    alone = [model(**plain_batch(tok, [p], [r], "right")).logits.item() for p, r in zip(PROMPTS, OTHER)]
    assert alone == pytest.approx(want, abs=1e-4)
    for side in ("right", "left"):
        enc = plain_batch(tok, PROMPTS, OTHER, side)
        assert (enc["attention_mask"] == 0).any()  # the rows differ in length: there is padding
        with torch.no_grad():
            got = model(**enc).logits.squeeze(-1).tolist()
        assert got == pytest.approx(want, abs=1e-4), side


@pytest.mark.parametrize("coef", [0.0, 0.3], ids=["paper-head", "likelihood"])
def test_a_saved_reward_model_scores_a_plain_transformers_batch_as_the_project_does(coef, template_tok, tmp_path):
    """The saved tokenizer pads on the right, where transformers' own classes (the paper's head)
    read positions as the model was trained: loaded with transformers alone, a padded batch gets
    the rewards `reward.score` gives."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = copy.deepcopy(template_tok)
    sft, _, c = ranking_setup(tok, tmp_path, likelihood_coef=coef)
    model = reward.untrained(sft, tok, c).eval()
    with torch.no_grad():
        model.score.weight.normal_()
        model.transformer.ln_f.bias.normal_()
    tok.padding_side = "left"  # as some hub tokenizers come, with a padded call's state in its backend
    tok(["Name a fruit", "What is 2 plus 2?"], padding=True)
    reward.save(model, tok, tmp_path / "rm")
    want = reward.score(model, tok, PROMPTS, OTHER)
    plain_tok = AutoTokenizer.from_pretrained(tmp_path / "rm", trust_remote_code=coef > 0)
    assert plain_tok.padding_side == "right"
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "rm", num_labels=1,
                                                               trust_remote_code=coef > 0).eval()
    enc = plain_batch(plain_tok, PROMPTS, OTHER)
    assert (enc["attention_mask"] == 0).any()
    with torch.no_grad():
        got = plain(**enc).logits.squeeze(-1).tolist()
    assert got == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("family,tied", [("llama", False), ("gpt_neox", True)])
def test_likelihood_reward_needs_a_known_family_with_tied_embeddings(family, tied, template_tok, tmp_path):
    sft = causal_lm_checkpoint(family, tmp_path / family, template_tok, tied=tied)
    with pytest.raises(ValueError, match=f"likelihood_coef 0.2 needs a base model of the gpt2, llama, qwen2 "
                                         f"families.*{family}.*set reward_model.likelihood_coef to 0"):
        reward.from_sft(sft, 0.2)


@pytest.mark.parametrize("coef", [0.0, 0.3])
def test_from_sft_adds_only_the_head_quietly_and_names_any_other_weight_the_checkpoint_lacks(coef, template_tok,
                                                                                             tmp_path):
    import logging

    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForSequenceClassification

    class Keep(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    sft = lm_checkpoint("gpt2", tmp_path / "sft", template_tok)
    seen, keep, log = [], Keep(), logging.getLogger("transformers.modeling_utils")
    log.addHandler(keep)
    try:
        reward.from_sft(sft, coef)
        assert not [m for m in seen if "LOAD REPORT" in m]  # the new head is expected: no report (once per member)
        AutoModelForSequenceClassification.from_pretrained(sft, num_labels=1)  # outside from_sft: reported
        assert [m for m in seen if "LOAD REPORT" in m]
    finally:
        log.removeHandler(keep)
    weights = load_file(sft / "model.safetensors")
    lost = "transformer.h.0.mlp.c_fc.weight"
    save_file({k: v for k, v in weights.items() if k != lost}, sft / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=f"{sft}: the checkpoint lacks {lost}; a reward model starts from"):
        reward.from_sft(sft, coef)
