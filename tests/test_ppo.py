"""PPO-ptx: the pure maths against slow obvious versions and hand-worked examples, the sampler
against transformers' generate, padding kept out of everything, the ptx term, a tiny run whose RM
score rises, the guard rails, and resume after a kill ending like an uninterrupted run."""

import textwrap
import types
from pathlib import Path

import pytest
import torch

from rlhf import config, generation, losses, models, ppo, reward, tracking, train

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["the red cat sat on the mat", "What is 1 plus 2? 3", "List 3 fruits: apple, pear, fig",
         "Reverse the words: big red dog"] * 30
PROMPTS = ["What is 2 plus 2?", "List 2 animals.", "say something nice", "Reverse the words: cat hat",
           "What is the colour of the sky on a clear day in the summer?", "hello"]


# ---- tiny models ----

def tiny_tokenizer():
    return models.train_tokenizer(TEXTS, 300)


def tiny_lm(tok, seed=0):
    torch.manual_seed(seed)
    return models.new_causal_lm(tok, n_layer=1, n_head=2, n_embd=32, n_positions=96)


def tiny_rm(tok, seed=1):
    from transformers import GPT2ForSequenceClassification

    torch.manual_seed(seed)
    cfg = tiny_lm(tok).config
    cfg.num_labels = 1
    return GPT2ForSequenceClassification(cfg)


class EvenTokenRM(torch.nn.Module):
    """A reward model a tiny policy can learn to please fast: the share of even token ids among the
    last `tail` real tokens (the response and its EOS)."""

    def __init__(self, tail: int = 9):
        super().__init__()
        self.tail = tail
        self.unused = torch.nn.Parameter(torch.zeros(1))  # so that it has a device

    def forward(self, input_ids, attention_mask):
        n = attention_mask.sum(1, keepdim=True)
        at_end = (torch.arange(input_ids.shape[1])[None] >= n - self.tail) & attention_mask.bool()
        even = ((input_ids % 2 == 0) & at_end).float()
        return types.SimpleNamespace(logits=(even.sum(1) / at_end.sum(1)).unsqueeze(-1))


def ppo_config(**overrides):
    values = {**config.read_params(ROOT / "params.yaml")["ppo"], "steps": 2, "batch_size": 4, "minibatch_size": 2,
              "ppo_epochs": 2, "max_new_tokens": 6, "lr": 1e-3, "ptx_batch_size": 2, "sample_every": 1}
    return config.build(config.PPOConfig, {**values, **overrides}, "ppo")


def trainer(tok, cfg, rm=None, seed=0, prompts=PROMPTS):
    policy = tiny_lm(tok)
    ref = tiny_lm(tok)
    blocks = torch.randint(0, len(tok), (16, 24), generator=torch.Generator().manual_seed(3))
    return ppo.PPOTrainer(ppo.PolicyAndValue(policy, tiny_rm(tok)), ref, rm or tiny_rm(tok, seed=2), tok, cfg,
                          prompts, seed=seed, accel=train.accelerator("cpu"), ptx_blocks=blocks)


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


# ---- the maths ----

def slow_gae(rewards, values, mask, gamma, lam):
    """The definition, row by row: A_t = sum_l (gamma lam)^l delta_{t+l} over the episode."""
    adv = torch.zeros_like(rewards)
    for b in range(rewards.shape[0]):
        n = int(mask[b].sum())
        v = [float(x) for x in values[b, :n]] + [0.0]
        deltas = [float(rewards[b, t]) + gamma * v[t + 1] - v[t] for t in range(n)]
        for t in range(n):
            adv[b, t] = sum((gamma * lam) ** (l - t) * deltas[l] for l in range(t, n))
    return adv, torch.where(mask.bool(), adv + values, 0.0)


@pytest.mark.parametrize("gamma,lam", [(1.0, 0.95), (0.9, 0.8), (1.0, 1.0), (0.5, 0.0)])
def test_gae_matches_the_slow_loop(gamma, lam):
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(5, 9, generator=g), torch.randn(5, 9, generator=g)
    lengths = torch.tensor([9, 1, 4, 7, 2])
    mask = (torch.arange(9)[None, :] < lengths[:, None]).long()
    rewards = torch.where(mask.bool(), rewards, 0.0)
    values_with_junk = torch.where(mask.bool(), values, torch.tensor(float("nan")))  # padding is never read
    adv, ret = ppo.gae(rewards, values_with_junk, mask, gamma, lam)
    ref_adv, ref_ret = slow_gae(rewards, torch.where(mask.bool(), values, 0.0), mask, gamma, lam)
    torch.testing.assert_close(adv, ref_adv, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ret, ref_ret, atol=1e-5, rtol=1e-5)
    assert (adv[mask == 0] == 0).all() and (ret[mask == 0] == 0).all()


def test_kl_penalty_hand_worked():
    # row 0: three tokens, log-ratios 0.5, -0.25, 1.0; row 1: one token (EOS first), then padding
    logp = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -9.0, -9.0]])
    ref = torch.tensor([[-1.5, -1.75, -1.5], [-0.1, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]])
    rewards, log_ratio = ppo.kl_penalised_rewards(torch.tensor([2.0, -1.0]), logp, ref, mask, kl_coef=0.1)
    torch.testing.assert_close(log_ratio, torch.tensor([[0.5, -0.25, 1.0], [-0.2, 0.0, 0.0]]))
    # -0.1 * log-ratio at every token, the RM score added at the last real one
    torch.testing.assert_close(rewards, torch.tensor([[-0.05, 0.025, -0.1 + 2.0], [0.02 - 1.0, 0.0, 0.0]]))
    assert log_ratio.sum(1).tolist() == pytest.approx([1.25, -0.2])  # the KL per response that is logged


def test_clipped_policy_loss_hand_worked():
    # ratios e^0.5 (above 1.2), e^-0.5 (below 0.8), 1.1 (inside); advantages +1, +1, -2; third token padding
    old = torch.zeros(1, 4)
    new = torch.tensor([[0.5, -0.5, float(torch.log(torch.tensor(1.1))), 3.0]], requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, -2.0, 5.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    loss, clip_fraction, approx_kl = losses.ppo_policy_loss(new, old, adv, mask, clip=0.2)
    # token 0: min(e^.5, 1.2) * 1 -> clipped at 1.2; token 1: min(e^-.5, .8) -> unclipped e^-.5; token 2: -2 * 1.1
    expected = -(1.2 + torch.exp(torch.tensor(-0.5)) - 2 * 1.1) / 3
    torch.testing.assert_close(loss, expected)
    assert clip_fraction.item() == pytest.approx(1 / 3)
    r = torch.tensor([0.5, -0.5, float(torch.log(torch.tensor(1.1)))])
    assert approx_kl.item() == pytest.approx(((r.exp() - 1) - r).mean().item(), rel=1e-5)
    loss.backward()
    assert new.grad[0, 0] == 0 and new.grad[0, 3] == 0  # clipped and padded tokens pass no gradient
    assert new.grad[0, 1] != 0 and new.grad[0, 2] != 0


def test_clipped_value_loss_hand_worked():
    old = torch.tensor([[0.0, 0.0, 0.0]])
    values = torch.tensor([[1.0, 0.1, 7.0]], requires_grad=True)
    returns = torch.tensor([[0.0, 1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0]])
    loss, clip_fraction = losses.ppo_value_loss(values, old, returns, mask, clip=0.2)
    # token 0: max((1-0)^2, (0.2-0)^2) = 1; token 1: max((0.1-1)^2, (0.1-1)^2) = 0.81 (inside the clip)
    assert loss.item() == pytest.approx(0.5 * (1.0 + 0.81) / 2)
    assert clip_fraction.item() == 0.0
    one = torch.tensor([[1]])
    # moving away from the return: the unclipped loss is the larger one
    loss2, frac2 = losses.ppo_value_loss(torch.tensor([[-0.5]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), one, 0.2)
    assert loss2.item() == pytest.approx(0.5 * 1.5 ** 2) and frac2.item() == 0.0
    # moving toward the return past the clip earns nothing beyond it: the clipped loss counts
    loss3, frac3 = losses.ppo_value_loss(torch.tensor([[0.5]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), one, 0.2)
    assert loss3.item() == pytest.approx(0.5 * 0.8 ** 2) and frac3.item() == 1.0


def test_masked_statistics_ignore_padding():
    x = torch.tensor([[1.0, 3.0, float("nan")], [5.0, float("inf"), float("nan")]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert losses.masked_mean(x, mask).item() == pytest.approx(3.0)
    assert losses.masked_mean(x, mask, dim=1).tolist() == pytest.approx([2.0, 5.0])
    w = losses.masked_whiten(x, mask)
    assert w[mask.bool()].mean().abs() < 1e-6 and w[mask.bool()].std(unbiased=False) == pytest.approx(1.0, rel=1e-4)
    assert (w[~mask.bool()] == 0).all()


def test_adaptive_kl_controller():
    assert ppo.adaptive_kl_coef(0.1, kl=4.0, episodes=100, target=2.0, horizon=1000) == pytest.approx(0.1 * 1.02)
    assert ppo.adaptive_kl_coef(0.1, kl=1.9, episodes=100, target=2.0, horizon=1000) == pytest.approx(0.1 * 0.995)
    assert ppo.adaptive_kl_coef(0.1, kl=0.0, episodes=1000, target=2.0, horizon=1000) == pytest.approx(0.08)


# ---- sampling, scoring, padding ----

def test_sampler_matches_transformers_generate(tok):
    model = tiny_lm(tok).eval()
    query, query_mask = ppo.encode_prompts(tok, PROMPTS, 80, "cpu")
    assert (query_mask[:, 0] == 0).any()  # left padding is exercised
    torch.manual_seed(5)
    hf = model.generate(input_ids=query, attention_mask=query_mask, do_sample=True, top_k=0, top_p=1.0,
                        max_new_tokens=10, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(5)
    ours = generation.sample(model, query, query_mask, 10, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id)
    assert torch.equal(ours, hf[:, query.shape[1]:])


def test_sync_free_sampler_takes_the_same_path(tok):
    """The accelerator path (4D masks, exponential race, rare finished-checks) on CPU: near zero
    temperature both it and greedy decoding take the argmax, so the tokens must agree."""
    model = tiny_lm(tok).eval()
    query, query_mask = ppo.encode_prompts(tok, PROMPTS, 80, "cpu")
    greedy = model.generate(input_ids=query, attention_mask=query_mask, do_sample=False, max_new_tokens=10,
                            pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)[:, query.shape[1]:]
    ours = generation.sample(model, query, query_mask, 10, eos_id=tok.eos_token_id, pad_id=tok.pad_token_id,
                             temperature=1e-4, generator=torch.Generator().manual_seed(0), sync_free=True)
    assert torch.equal(ours, greedy)


@pytest.mark.parametrize("sync_free", [False, True])
def test_sampler_stops_at_eos_and_pads_after_it(tok, sync_free):
    model = tiny_lm(tok).eval()
    bias = torch.zeros(len(tok))
    bias[tok.eos_token_id] = 2.5

    class EOSLikely(torch.nn.Module):  # the tiny LM with EOS made likely, so rows end at different times
        def forward(self, **kw):
            out = model(**kw)
            out.logits = out.logits + bias
            return out

    query, query_mask = ppo.encode_prompts(tok, PROMPTS * 4, 80, "cpu")
    response = generation.sample(EOSLikely(), query, query_mask, 12, eos_id=tok.eos_token_id,
                                 pad_id=tok.pad_token_id, generator=torch.Generator().manual_seed(0),
                                 sync_free=sync_free)
    mask = generation.response_mask(response, tok.eos_token_id)
    lengths = mask.sum(1)
    assert response.shape[1] <= 12 and lengths.min() < lengths.max()
    for row, n in zip(response, lengths.tolist()):
        if (row == tok.eos_token_id).any():
            assert row[n - 1] == tok.eos_token_id and (row[:n - 1] != tok.eos_token_id).all()
            assert (row[n:] == tok.pad_token_id).all()
        else:
            assert n == response.shape[1]


def tiny_likelihood_rm(tok, coef, seed=1):
    from rlhf.likelihood_reward import GPT2LikelihoodReward, GPT2LikelihoodRewardConfig

    torch.manual_seed(seed)
    return GPT2LikelihoodReward(GPT2LikelihoodRewardConfig(**{
        **tiny_lm(tok).config.to_dict(), "num_labels": 1, "rlhf_likelihood_coef": coef,
        "rlhf_response_marker": reward.response_marker(tok)}))


@pytest.mark.parametrize("likelihood_coef", [0.0, 0.5])
def test_score_tokens_equals_score_on_text(tok, likelihood_coef):
    """A rollout's left-padded prompt and right-padded response score as the text does, for the
    paper's head and for the likelihood reward model (whose response starts after the template)."""
    rm = (tiny_likelihood_rm(tok, likelihood_coef) if likelihood_coef else tiny_rm(tok)).eval()
    rm.config.pad_token_id = tok.pad_token_id
    prompts, responses = ["What is 2 plus 2?", "hello"], ["4", "the red cat sat"]
    expected = reward.score(rm, tok, prompts, responses)
    query, query_mask = ppo.encode_prompts(tok, prompts, 80, "cpu")
    enc = [tok(" " + r, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for r in responses]
    width = max(map(len, enc))
    response = torch.tensor([e + [tok.pad_token_id] * (width - len(e)) for e in enc])
    ids = torch.cat([query, response], 1)
    attn = torch.cat([query_mask, generation.response_mask(response, tok.eos_token_id)], 1)
    with torch.no_grad():
        got = reward.score_tokens(rm, ids, attn, tok.pad_token_id)
    assert got.tolist() == pytest.approx(expected, abs=1e-5)


def test_padding_is_masked_out_of_rollouts_and_losses(tok):
    """A prompt's rollout numbers do not depend on how much padding its batch gave it."""
    cfg = ppo_config(temperature=1.0)
    t = trainer(tok, cfg)
    alone = t.experience(["hello"], it=0)
    t2 = trainer(tok, cfg)
    # the same first row, now left-padded beside a long prompt: sample it with the same generator
    batch = t2.experience(["hello", PROMPTS[4]], it=0)
    n = int(alone.mask[0].sum())
    assert (batch.query_mask[0] == 0).sum() > 0
    # the sampled tokens differ with batch shape, so compare the forward passes on the same tokens
    ids = torch.cat([batch.query[:1], alone.response], 1)
    attn = torch.cat([batch.query_mask[:1], alone.mask], 1)
    with torch.no_grad():
        logits, values, _ = t2.model(ids, attn, alone.response.shape[1])
    logp = ppo.logprobs_of(logits, alone.response, 1.0)
    torch.testing.assert_close(logp[0, :n], alone.logprobs[0, :n], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(values[0, :n], alone.values[0, :n], atol=1e-5, rtol=1e-4)
    # a minibatch drops the columns that are padding in all its rows; its loss stays the same
    t2.cfg = ppo_config(batch_size=2, minibatch_size=1, ppo_epochs=1)
    trimmed = [t2.loss(t2.model, mb)[0].item() for mb in t2.minibatches(batch, 0, None)]
    fields = ("response", "mask", "logprobs", "values", "advantages", "returns")
    full = [t2.loss(t2.model, {"input_ids": batch.input_ids[i:i + 1], "attention_mask": batch.attention_mask[i:i + 1],
                               **{k: getattr(batch, k)[i:i + 1] for k in fields}})[0].item() for i in range(2)]
    assert sorted(trimmed) == pytest.approx(sorted(full), rel=1e-5)
    # garbage in the padded positions of a minibatch changes neither the loss nor its statistics
    mb = next(t.minibatches(batch, 0, None))
    junk = {k: v.clone() for k, v in mb.items()}
    pad = ~junk["mask"].bool()
    for k in ("logprobs", "values", "advantages", "returns"):
        junk[k][pad] = 1e6
    junk["input_ids"][junk["attention_mask"] == 0] = 7
    (la, sa), (lb, sb) = t.loss(t.model, mb), t.loss(t.model, junk)
    assert la.item() == pytest.approx(lb.item(), rel=1e-5) and sa == pytest.approx(sb, rel=1e-5)


# ---- the ptx term ----

def test_ptx_term_is_added_to_every_update(tok):
    cfg = ppo_config(ptx_coef=0.7)
    t = trainer(tok, cfg)
    mbs = list(t.batches(0))
    assert len(mbs) == cfg.steps * t.per_iteration and all("ptx" in mb for mb in mbs)
    mb = mbs[0]
    loss, stats = t.loss(t.model, mb)
    no_ptx = {k: v for k, v in mb.items() if k != "ptx"}
    loss_without, stats_without = t.loss(t.model, no_ptx)
    lm_loss = models_lm_loss(t.model.policy, mb["ptx"])
    assert stats["ppo/ptx_loss"] == pytest.approx(lm_loss, rel=1e-5) and "ppo/ptx_loss" not in stats_without
    assert loss.item() == pytest.approx(loss_without.item() + 0.7 * lm_loss, rel=1e-5)


def models_lm_loss(model, batch):
    from rlhf import lm

    with torch.no_grad():
        return lm.lm_loss(model, batch)[0].item()


def test_plain_ppo_draws_no_pretraining_batch(tok, monkeypatch):
    drawn = []
    real = ppo.data.block_batches
    monkeypatch.setattr(ppo.data, "block_batches", lambda *a, **k: drawn.append(1) or real(*a, **k))
    t = trainer(tok, ppo_config(ptx_coef=0.0))
    history = t.train()
    assert not drawn and all("ppo/ptx_loss" not in h for h in history)
    t = trainer(tok, ppo_config(ptx_coef=0.5))
    history = t.train()
    assert drawn and all("ppo/ptx_loss" in h for h in history)


# ---- training ----

def test_tiny_run_rm_score_rises_and_logs_every_metric(tok):
    cfg = ppo_config(steps=16, batch_size=16, minibatch_size=4, ppo_epochs=2, max_new_tokens=8, lr=1e-2,
                     kl_coef=0.01, ptx_coef=0.0, max_kl=100.0, sample_every=8)
    t = trainer(tok, cfg, rm=EvenTokenRM())
    tables = []
    before = [p.detach().clone() for p in t.model.parameters()]
    history = t.train(on_iteration=lambda it, m, samples: tables.append((it, samples)))
    scores = [h["ppo/rm_score"] for h in history]
    late = sum(scores[-4:]) / 4
    assert late > scores[0] + 0.15 and late > sum(scores[:4]) / 4, scores  # about 0.5 (chance) at the start
    assert all(not torch.equal(a, b) for a, b in zip(before, t.model.parameters()))  # policy and value trained
    for key in ("ppo/rm_score", "ppo/kl", "ppo/entropy", "ppo/response_length", "ppo/clip_fraction",
                "ppo/loss/value", "ppo/loss/policy", "ppo/approx_kl", "ppo/time/generate", "ppo/time/score",
                "ppo/time/update", "ppo/episodes_per_s"):
        assert key in history[-1], key
    assert [it for it, s in tables if s] == [0, 8]
    assert {"prompt", "response", "rm_score", "kl"} <= set(tables[0][1][0])


def test_activation_checkpointing_trains_the_same_policy_and_value_model(tok):
    """ppo.activation_checkpointing: set on the two models PPO trains, not on the frozen reference
    and reward model; the rollouts (sampled in eval mode, with the KV cache) and the trained
    weights are those without it."""
    runs = {}
    for on in (False, True):
        t = trainer(tok, ppo_config(activation_checkpointing=on))
        history = t.train()
        runs[on] = history, t.model.state_dict()
    assert t.model.policy.is_activation_checkpointing and t.model.value_model.is_activation_checkpointing
    assert not t.ref.is_activation_checkpointing and not t.rm.is_activation_checkpointing
    (history, weights), (history_on, weights_on) = runs[False], runs[True]
    for key in ("ppo/rm_score", "ppo/kl", "ppo/response_length", "ppo/loss/policy", "ppo/loss/value", "ppo/ptx_loss"):
        assert [h[key] for h in history_on] == pytest.approx([h[key] for h in history], rel=1e-5, abs=1e-7), key
    for k, v in weights.items():
        torch.testing.assert_close(weights_on[k], v)


def test_lora_trains_the_policy_and_the_value_model_by_low_rank_updates(tok):
    """ppo.lora: adapters in the policy and the value model (whose scalar head trains in full), none in
    the frozen reference and reward model. The adapters start at zero, so the first rollout is the one
    full fine-tuning samples; afterwards the policy is a plain model again whose weights moved by
    updates of rank <= r in its linear layers only."""
    lora = {"rank": 2, "alpha": 4.0, "dropout": 0.0, "target_modules": "all-linear"}
    full = trainer(tok, ppo_config()).train()
    t = trainer(tok, ppo_config(lora=lora))
    policy = {k: v.clone() for k, v in t.model.policy.state_dict().items()}
    value = {k: v.clone() for k, v in t.model.value_model.state_dict().items()}
    frozen = [{k: v.clone() for k, v in m.state_dict().items()} for m in (t.ref, t.rm)]
    history = t.train()
    for key in ("ppo/rm_score", "ppo/kl", "ppo/response_length"):
        assert history[0][key] == pytest.approx(full[0][key], rel=1e-6, abs=1e-7), key
    assert all(not models.lora_layers(m) for m in (t.model, t.ref, t.rm))
    for before, m in zip(frozen, (t.ref, t.rm)):
        assert all(torch.equal(v, before[k]) for k, v in m.state_dict().items())
    for before, m, head in ((policy, t.model.policy, set()), (value, t.model.value_model, {"score.weight"})):
        after = m.state_dict()
        changed = {k for k in before if not torch.equal(after[k], before[k])}
        assert head <= changed and changed - head
        for k in changed - head:
            assert any(f".{n}." in k for n in ("c_attn", "c_proj", "c_fc")), k
            assert torch.linalg.matrix_rank(after[k] - before[k]) <= 2, k


def test_lora_dropout_is_refused_for_ppo():
    with pytest.raises(config.ConfigError, match="lora.dropout must be 0"):
        ppo_config(lora={"rank": 2, "alpha": 4.0, "dropout": 0.1, "target_modules": "all-linear"})


def test_adaptive_kl_moves_beta(tok):
    t = trainer(tok, ppo_config(adaptive_kl=True, target_kl=1e-4, kl_horizon=10, kl_coef=0.05, max_kl=1e9))
    history = t.train()
    assert history[0]["ppo/kl_coef"] == 0.05 and t.state["kl_coef"] != 0.05


def guarded_run(tmp_path, monkeypatch, t):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    with tracking.stage_run("ppo@ptx", "exp") as run:
        holder = run
        t.train()
    return holder


def test_kl_over_max_kl_stops_the_run_and_fails_it(tok, tmp_path, monkeypatch):
    t = trainer(tok, ppo_config(max_kl=1e-6, lr=0.05, steps=3))
    with pytest.raises(ppo.KLExceededError, match="over ppo.max_kl"):
        guarded_run(tmp_path, monkeypatch, t)
    runs = tracking._client(tmp_path).search_runs([tracking._client(tmp_path).get_experiment_by_name("exp").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]


def test_nan_reward_stops_the_run(tok, tmp_path, monkeypatch):
    class NaNRM(EvenTokenRM):
        def forward(self, input_ids, attention_mask):
            return types.SimpleNamespace(logits=torch.full((len(input_ids), 1), float("nan")))

    with pytest.raises(train.NonFiniteLossError, match="non-finite rollout"):
        guarded_run(tmp_path, monkeypatch, trainer(tok, ppo_config(), rm=NaNRM()))


SCRIPT = textwrap.dedent("""\
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    from test_ppo import tiny_tokenizer, trainer, ppo_config
    ckpt, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    def on_iteration(it, metrics, samples):
        if it + 1 == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup, no flush
    t = trainer(tiny_tokenizer(), ppo_config(steps=6, ptx_coef=0.5, adaptive_kl=True, kl_horizon=50))
    history = t.train(checkpoint_dir=ckpt, checkpoint_every=4, run_id="r1", on_iteration=on_iteration)
    torch.save({{"weights": t.model.state_dict(), "history": history, "kl_coef": t.state["kl_coef"]}}, out)
    """)


def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, script_runner):
    run = script_runner(SCRIPT)
    straight = run(tmp_path / "c1", tmp_path / "straight.pt", 0)
    assert straight.returncode == 0, straight.stderr[-2000:]
    killed = run(tmp_path / "c2", tmp_path / "resumed.pt", 5)  # checkpoints after iterations 2 and 4
    assert killed.returncode == -9 and (tmp_path / "c2" / train.CHECKPOINT_FILE).exists()
    resumed = run(tmp_path / "c2", tmp_path / "resumed.pt", 0)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout + resumed.stderr, resumed.stderr[-2000:]
    a, b = torch.load(tmp_path / "straight.pt"), torch.load(tmp_path / "resumed.pt")
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k
    assert a["kl_coef"] == b["kl_coef"] != ppo_config().kl_coef  # the adaptive controller moved beta off its start
    drop = ("ppo/time/", "ppo/episodes_per_s")  # wall-clock figures differ; everything else is the same
    strip = lambda h: [{k: v for k, v in row.items() if not k.startswith(drop)} for row in h]  # noqa: E731
    assert len(b["history"]) == 6 and strip(a["history"]) == strip(b["history"])
