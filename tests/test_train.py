"""The training loop: schedule, gradient accumulation, NaN guard (and a FAILED run), resume after
a real kill ends exactly like an uninterrupted run, evaluation hooks and their state."""

import textwrap

import pytest
import torch

from rlhf import tracking, train


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))


def batches(seed=1):
    g = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randn(16, 4, generator=g)
        yield x, x.sum(1, keepdim=True)


def mse(model, batch):
    x, y = batch
    return torch.nn.functional.mse_loss(model(x), y), {}


def test_cosine_with_warmup():
    lrs = [train.cosine_with_warmup(s, 100, 10) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.5) and lrs[100] == pytest.approx(0.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_fit_learns_and_logs_every_step():
    model = tiny_model()
    seen = []
    history = train.fit(model, batches(), mse, steps=60, lr=0.02, warmup_steps=5,
                        on_step=lambda s, row: seen.append(s), prefix="t")
    assert seen == list(range(60))
    assert history[-1]["t/loss"] < 0.2 * history[0]["t/loss"]
    assert history[-1]["t/lr"] == pytest.approx(0.0)


def test_gradient_accumulation_matches_one_big_batch():
    big = next(batches())
    halves = iter([(big[0][:8], big[1][:8]), (big[0][8:], big[1][8:])])
    a, b = tiny_model(), tiny_model()
    a[1].p = b[1].p = 0.0  # no dropout: the two must be the same maths
    train.fit(a, iter([big]), mse, steps=1, lr=0.1, grad_clip=1e9)
    train.fit(b, halves, mse, steps=1, lr=0.1, grad_clip=1e9, grad_accum=2)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)


def two_layer_lm(family: str, seed: int = 0):
    """A two-layer causal LM of `family` with dropout on (GPT-2: residual, embedding, attention;
    Llama: attention), and one of its layers' MLPs."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    if family == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_positions=32, n_embd=16, n_layer=2, n_head=2,
                                           resid_pdrop=0.1, embd_pdrop=0.1, attn_pdrop=0.1))
        return model, model.transformer.h[1].mlp
    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                         num_attention_heads=2, num_key_value_heads=1, attention_dropout=0.1))
    return model, model.model.layers[1].mlp


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_activation_checkpointing_recomputes_each_layer_and_trains_the_same(family):
    """`activation_checkpointing`: every layer runs again in the backward pass, dropout draws the
    same masks again, so the losses and the weights after training are those without it."""
    from rlhf import data, lm

    blocks = torch.randint(0, 64, (12, 24), generator=torch.Generator().manual_seed(0))
    results = {}
    for on in (False, True):
        model, mlp = two_layer_lm(family)
        calls = []
        mlp.register_forward_pre_hook(lambda *args: calls.append(1))
        train.set_seed(1)
        history = train.fit(model, data.block_batches(blocks, 4, 0), lm.lm_loss, steps=3, lr=1e-2,
                            activation_checkpointing=on)
        results[on] = [h["train/loss"] for h in history], model.state_dict(), len(calls)
    (losses, weights, calls), (losses_on, weights_on, calls_on) = results[False], results[True]
    assert calls == 3 and calls_on == 6  # one forward a step; with checkpointing one more in each backward
    assert losses_on == pytest.approx(losses, rel=1e-6)
    for k, v in weights.items():
        torch.testing.assert_close(weights_on[k], v)


def test_activation_checkpointing_needs_a_transformers_model():
    with pytest.raises(ValueError, match="holds no transformers model"):
        train.fit(tiny_model(), batches(), mse, steps=1, lr=0.1, activation_checkpointing=True)


def lora(rank=4, targets="all-linear", dropout=0.0):
    from rlhf import config

    return config.LoraConfig(rank=rank, alpha=8.0, dropout=dropout, target_modules=targets)


# the layers LoRA's all-linear adapts in two_layer_lm (every linear layer of the blocks)
ALL_LINEAR = {"gpt2": ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"),
              "llama": ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")}


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_lora_trains_low_rank_updates_of_the_target_layers_and_returns_the_plain_model(family):
    """`lora`: only the adapters train (the optimizer sees nothing else); when training ends the
    model is its own architecture again, every weight trainable, with a change of rank <= r in each
    target layer's weight and none anywhere else (embeddings, norms, the LM head)."""
    from rlhf import data, lm, models

    blocks = torch.randint(0, 64, (12, 24), generator=torch.Generator().manual_seed(0))
    model, _ = two_layer_lm(family)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []

    def loss(m, batch):
        seen.append(sorted(n for n, p in m.named_parameters() if p.requires_grad))
        return lm.lm_loss(m, batch)
    history = train.fit(model, data.block_batches(blocks, 4, 0), loss, steps=4, lr=3e-2, lora=lora(rank=2))
    assert seen[0] and all(".lora_A." in n or ".lora_B." in n for n in seen[0])
    assert history[-1]["train/loss"] < history[0]["train/loss"]
    assert not models.lora_layers(model) and all(p.requires_grad for p in model.parameters())
    after = model.state_dict()
    assert sorted(after) == sorted(before)
    changed = {k for k in before if not torch.equal(after[k], before[k])}
    assert changed == {k for k in before if k.endswith(".weight") and any(t in k for t in ALL_LINEAR[family])}
    for k in changed:
        assert torch.linalg.matrix_rank(after[k] - before[k]) <= 2, k


def test_lora_on_named_layers_only():
    from rlhf import data, lm

    model, _ = two_layer_lm("gpt2")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train.fit(model, data.block_batches(torch.randint(0, 64, (8, 24)), 4, 0), lm.lm_loss, steps=2, lr=3e-2,
              lora=lora(targets=["c_attn"]))
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"transformer.h.0.attn.c_attn.weight", "transformer.h.1.attn.c_attn.weight"}


def test_lora_with_a_target_the_model_lacks_names_it():
    model, _ = two_layer_lm("gpt2")
    with pytest.raises(ValueError, match=r"LoRA in GPT2LMHeadModel: .*q_proj.*lora.target_modules is \['q_proj'\]"):
        train.fit(model, batches(), mse, steps=1, lr=0.1, lora=lora(targets=["q_proj"]))
    with pytest.raises(ValueError, match="holds no transformers model"):
        train.fit(tiny_model(), batches(), mse, steps=1, lr=0.1, lora=lora())


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_a_model_in_lora_training_saves_and_merges_as_the_plain_model_it_computes(family, tmp_path):
    """`models.save` mid-training (SFT keeps its best epoch so) writes the plain model with the
    updates folded in, and leaves the adapters training; `merge_lora` folds them in place. Both
    compute what the model with adapters computes."""
    from transformers import AutoModelForCausalLM

    from rlhf import models

    model, _ = two_layer_lm(family)
    model.eval()
    models.add_lora(model, lora())
    with torch.no_grad():
        for _, layer in models.lora_layers(model):
            layer.lora_B["default"].weight.normal_(std=0.5)  # B starts at 0: a real update
    ids = torch.randint(0, 64, (3, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(ids).logits
    models.save(model, models.train_tokenizer(["a b c"] * 5, 270), tmp_path / "m")
    assert models.lora_layers(model)  # still training
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "m").eval()
    assert not any("lora" in k or "base_layer" in k for k in saved.state_dict())
    models.merge_lora(model)
    assert not models.lora_layers(model) and not hasattr(model, "peft_config")
    with torch.no_grad():
        torch.testing.assert_close(saved(ids).logits, want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model(ids).logits, want, rtol=1e-4, atol=1e-4)


def test_nan_guard_stops_and_marks_the_run_failed(tmp_path, monkeypatch):
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv(tracking.PARENT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)

    def nan_at_3(model, batch):
        loss, _ = mse(model, batch)
        nan_at_3.calls += 1
        return (loss * float("nan") if nan_at_3.calls == 4 else loss), {}
    nan_at_3.calls = 0
    model = tiny_model()
    with pytest.raises(train.NonFiniteLossError, match="t: loss is nan at step 3"):
        with tracking.stage_run("sft", "exp") as run:
            train.fit(model, batches(), nan_at_3, steps=10, lr=0.01, prefix="t")
    assert tracking.get_run(run.run_id).info.status == "FAILED"
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the NaN never reached the weights


SCRIPT = textwrap.dedent("""\
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    from test_train import tiny_model, batches, mse
    from rlhf import train
    ckpt, out, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
    def on_step(step, row):
        if step + 1 == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill: no cleanup, no flush
    def on_eval(step, state):
        state["evals"] = state.get("evals", []) + [step]
    torch.manual_seed(123)
    model = tiny_model()
    train.fit(model, batches(), mse, steps=40, lr=0.02, warmup_steps=4, on_step=on_step,
              eval_every=10, on_eval=on_eval, checkpoint_dir=ckpt, checkpoint_every=5, run_id="r1")
    torch.save(model.state_dict(), out)
    """)
# the same with a GPT-2 LM under LoRA (dropout 0.1 in the adapters): the checkpoint holds the adapters
LORA_SCRIPT = SCRIPT.replace("from test_train import tiny_model, batches, mse", """\
from test_train import two_layer_lm, lora
from rlhf import data, lm
def tiny_model():
    return two_layer_lm("gpt2")[0]
def batches():
    return data.block_batches(torch.randint(0, 64, (12, 24), generator=torch.Generator().manual_seed(0)), 4, 0)
mse = lm.lm_loss""").replace("run_id=\"r1\")", "run_id=\"r1\", lora=lora(dropout=0.1))")


@pytest.mark.parametrize("script", [SCRIPT, LORA_SCRIPT], ids=["full", "lora"])
def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path, script_runner, script):
    run = script_runner(script)
    assert run(tmp_path / "c1", tmp_path / "straight.pt", 0).returncode == 0
    killed = run(tmp_path / "c2", tmp_path / "resumed.pt", 23)
    assert killed.returncode == -9 and (tmp_path / "c2" / train.CHECKPOINT_FILE).exists()
    resumed = run(tmp_path / "c2", tmp_path / "resumed.pt", 0)
    assert resumed.returncode == 0 and "resuming from" in resumed.stdout + resumed.stderr
    assert not (tmp_path / "c2" / train.CHECKPOINT_FILE).exists()  # removed once training ends
    a, b = torch.load(tmp_path / "straight.pt"), torch.load(tmp_path / "resumed.pt")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_checkpoint_of_another_run_is_not_resumed(tmp_path):
    model = tiny_model()
    with pytest.raises(RuntimeError):
        def boom(step, row):
            if step == 7:
                raise RuntimeError("killed")
        train.fit(model, batches(), mse, steps=20, lr=0.01, checkpoint_dir=tmp_path, checkpoint_every=5,
                  run_id="a", on_step=boom)
    steps = []
    train.fit(tiny_model(), batches(), mse, steps=20, lr=0.01, checkpoint_dir=tmp_path, checkpoint_every=5,
              run_id="b", on_step=lambda s, row: steps.append(s))
    assert steps[0] == 0  # a different fingerprint starts over


def test_fingerprint():
    assert train.fingerprint({"lr": 1}, 3) == train.fingerprint({"lr": 1}, 3) != train.fingerprint({"lr": 2}, 3)


def test_response_only_labels_and_truncation_keeps_the_response():
    from rlhf import data, models

    tok = models.train_tokenizer(["What is 1 plus 2? 3", "Reverse the words: red cat big"] * 50, 300)
    (full,) = data.encode_pairs(tok, ["What is 1 plus 2?"], ["3"], 128)
    n_resp = sum(label != -100 for label in full["labels"])
    assert full["labels"][:-n_resp] == [-100] * (len(full["labels"]) - n_resp)  # prompt tokens: no loss
    assert full["labels"][-n_resp:] == full["input_ids"][-n_resp:] and full["input_ids"][-1] == tok.eos_token_id
    (cut,) = data.encode_pairs(tok, ["Reverse the words: " + "red cat big " * 40], ["big cat red"], 16)
    assert len(cut["input_ids"]) == 16 and cut["input_ids"][-1] == tok.eos_token_id
    assert sum(label != -100 for label in cut["labels"]) >= 3  # the response survived


def test_a_prompt_is_tokenized_alike_for_training_and_for_sampling():
    """With a tokenizer that adds a BOS token (as Llama's does), an SFT or RM example starts with
    the ids that generation and PPO prompt the policy with, and every pretraining document with it."""
    from tokenizers.processors import TemplateProcessing

    from rlhf import data, models, ppo

    tok = models.train_tokenizer(["What is 1 plus 2? 3", "Name a fruit apple"] * 50, 300)
    tok.backend_tokenizer.post_processor = TemplateProcessing(single=f"{models.EOS} $A",
                                                              special_tokens=[(models.EOS, tok.eos_token_id)])
    prompts, responses = ["What is 1 plus 2?", "Name a fruit"], ["3", "apple"]
    query, mask = ppo.encode_prompts(tok, prompts, 64, "cpu")
    for (example, response), q, m in zip(zip(data.encode_pairs(tok, prompts, responses, 64), responses), query, mask):
        sampled = q[m.bool()].tolist()
        assert sampled[0] == tok.eos_token_id  # the BOS the tokenizer adds
        assert example["input_ids"][:len(sampled)] == sampled
        assert example["input_ids"][len(sampled):] == tok(" " + response, add_special_tokens=False)["input_ids"] + [
            tok.eos_token_id]
    # pretraining text too: every document starts with the BOS, after the EOS that ends the last one
    docs = ["What is 1 plus 2? 3", "Name a fruit apple"]
    flat = data.pack_blocks(tok, docs * 4, 4).flatten().tolist()
    one = [tok(d, add_special_tokens=False)["input_ids"] for d in docs]
    expected = [t for d in one for t in [tok.eos_token_id, *d, tok.eos_token_id]] * 4
    assert flat == expected[:len(flat)] and len(flat) > len(expected) - 4


CHAT = ("{{ bos_token }}{% for m in messages %}### {{ m['role'] }}:\n{{ m['content'] }}\n\n{% endfor %}"
        "{% if add_generation_prompt %}### assistant:\n{% endif %}")


def test_without_a_chat_template_a_prompt_is_the_instruction_template():
    from rlhf import models

    tok = models.train_tokenizer(["What is 1 plus 2? 3"] * 50, 300)
    assert models.format_prompt(tok, "What is 1 plus 2?") == "Instruction: What is 1 plus 2?\nResponse:"
    assert models.format_prompt(tok, "Name a fruit", [("What is 1 plus 2?", "3"), ("Say hi", "hi")]) == (
        "Instruction: What is 1 plus 2?\nResponse: 3\n\nInstruction: Say hi\nResponse: hi\n\n"
        "Instruction: Name a fruit\nResponse:")
    assert models.response_separator(tok) == " "


@pytest.mark.parametrize("adds_bos", [False, True])
def test_a_tokenizers_chat_template_formats_every_prompt_and_the_response_follows_the_opened_turn(adds_bos):
    """With a chat template: the prompt is the user's turn, few-shot examples earlier turns, the
    response follows the assistant's opened turn with nothing between; training examples, PPO's
    prompts, generation and the likelihood reward's marker all use it; a template that writes the
    BOS token does not give two where the tokenizer adds one."""
    from tokenizers.processors import TemplateProcessing

    from rlhf import data, models, ppo, reward

    tok = models.train_tokenizer(["### user: What is 1 plus 2? ### assistant: 3", "Name a fruit apple"] * 50, 300)
    tok.chat_template = CHAT
    bos = tok.bos_token  # the tokenizer's EOS doubles as its BOS (models.train_tokenizer)
    if adds_bos:
        tok.backend_tokenizer.post_processor = TemplateProcessing(single=f"{bos} $A",
                                                                  special_tokens=[(bos, tok.bos_token_id)])
    text = models.format_prompt(tok, "What is 1 plus 2?")
    assert text == ("" if adds_bos else bos) + "### user:\nWhat is 1 plus 2?\n\n### assistant:\n"
    assert models.format_prompt(tok, "Name a fruit", [("What is 1 plus 2?", "3")]).endswith(
        "### user:\nWhat is 1 plus 2?\n\n### assistant:\n3\n\n### user:\nName a fruit\n\n### assistant:\n")
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[1] != tok.bos_token_id  # one BOS either way
    assert models.response_separator(tok) == ""
    prompts, responses = ["What is 1 plus 2?", "Name a fruit"], ["3", "apple"]
    query, mask = ppo.encode_prompts(tok, prompts, 64, "cpu")
    for example, prompt, response, q, m in zip(data.encode_pairs(tok, prompts, responses, 64), prompts, responses,
                                               query, mask):
        sampled = q[m.bool()].tolist()
        assert sampled == tok(models.format_prompt(tok, prompt))["input_ids"]
        assert example["input_ids"] == sampled + tok(response, add_special_tokens=False)["input_ids"] + [
            tok.eos_token_id]
        assert example["labels"][:len(sampled)] == [-100] * len(sampled)
        assert example["labels"][len(sampled):] == example["input_ids"][len(sampled):]
    assert reward.response_marker(tok) == tok("\n\n### assistant:\n", add_special_tokens=False)["input_ids"]
    # generation prompts the model with the same text
    torch.manual_seed(0)
    model = models.new_causal_lm(tok, n_layer=1, n_head=2, n_embd=16, n_positions=64).eval()
    (got,) = models.generate(model, tok, ["Name a fruit"], 5, do_sample=False)
    enc = tok(models.format_prompt(tok, "Name a fruit"), return_tensors="pt")
    with torch.no_grad():
        want = model.generate(**enc, max_new_tokens=5, do_sample=False, pad_token_id=tok.pad_token_id,
                              eos_token_id=tok.eos_token_id)
    assert got == tok.decode(want[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def tiny_lm():
    """A tokenizer and a 2-layer causal LM (seed 0) for the SFT loss tests."""
    from rlhf import models

    tok = models.train_tokenizer(["the fox is red. the cat is blue. What is 2 plus 3? 5."] * 50, 300)
    torch.manual_seed(0)
    return tok, models.new_causal_lm(tok, 2, 2, 32, 64)


def test_lm_loss_with_left_padding_and_kept_logits_equals_the_full_loss():
    """lm_loss computes logits only from the first labelled position; on left-padded batches that
    is the response span. Same loss and gradients as every logit of a right-padded batch."""
    from rlhf import data, lm
    from rlhf.losses import masked_lm_loss

    tok, model = tiny_lm()
    ex = data.encode_pairs(tok, ["What is 2 plus 3?", "the fox is red. the cat is blue. Summarize in one sentence."],
                           ["5", "the fox is red and the cat is blue."], 64)
    right, left = data.collate(ex, tok.pad_token_id), data.collate(ex, tok.pad_token_id, left=True)
    assert (left["attention_mask"][:, -1] == 1).all() and (right["attention_mask"][:, 0] == 1).all()

    def loss_and_grads(fn):
        model.zero_grad()
        loss = fn()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    ref, ref_g = loss_and_grads(lambda: masked_lm_loss(
        model(input_ids=right["input_ids"], attention_mask=right["attention_mask"]).logits, right["labels"]))
    for batch in (right, left):
        loss, grads = loss_and_grads(lambda: lm.lm_loss(model, batch)[0])
        torch.testing.assert_close(loss, ref)
        for g, r in zip(grads, ref_g):
            torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-4)


def test_lm_loss_by_length_equals_one_pass_and_reads_less_padding():
    """sft.length_groups: a batch's rows sorted by length, run as G passes each cut to its own rows'
    width, give the one-pass loss and gradients; each pass is no wider than its longest row."""
    from rlhf import data, lm

    tok, model = tiny_lm()
    prompts = ["What is 2 plus 3?", "the fox is red. the cat is blue. Summarize in one sentence.", "Say hi",
               "the cat is blue. What colour is the cat?", "What is 1 plus 1?"]
    responses = ["5", "the fox is red and the cat is blue.", "hi", "blue", "2"]
    ex = data.encode_pairs(tok, prompts, responses, 64)
    batch = data.collate(ex, tok.pad_token_id, left=True)
    lengths = sorted((len(e["input_ids"]) for e in ex), reverse=True)
    assert len(set(lengths)) > 2
    assert lm.lm_loss_by_length(1) is lm.lm_loss

    widths: list[int] = []
    model.register_forward_pre_hook(lambda m, args, kwargs: widths.append(kwargs["input_ids"].shape[1]),
                                    with_kwargs=True)

    def loss_and_grads(fn):
        model.zero_grad()
        loss = fn(model, batch)[0]
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    ref, ref_g = loss_and_grads(lm.lm_loss)
    assert widths == [batch["input_ids"].shape[1]]
    for groups in (2, 3, 5, 8):  # 8 > rows: the empty parts are skipped
        widths.clear()
        loss, grads = loss_and_grads(lm.lm_loss_by_length(groups))
        torch.testing.assert_close(loss, ref)
        for g, r in zip(grads, ref_g):
            torch.testing.assert_close(g, r, atol=1e-6, rtol=1e-4)
        parts = [p.tolist() for p in torch.tensor(lengths).tensor_split(groups) if len(p)]
        assert widths == [p[0] for p in parts]  # each pass as wide as its longest row


def test_the_corpus_is_read_from_files_and_folders_of_any_data_type(tmp_path):
    """The synthesized JSONL and a folder of one's own text (gzipped JSONL, a JSON array, CSV,
    Parquet; its README left out) give every document's `text` in order; a bad record fails naming
    its file, place and field."""
    import gzip
    import json

    import pandas as pd

    from rlhf import data

    (tmp_path / "world.jsonl").write_text('{"text": "w1"}\n\n{"text": "w2"}\n')
    own = tmp_path / "own"
    (own / "sub").mkdir(parents=True)
    (own / "a.jsonl.gz").write_bytes(gzip.compress(b'{"text": "a1", "url": "x"}\n'))
    (own / "b.json").write_text(json.dumps([{"text": "b1"}, {"text": "b2"}]))
    (own / "c.csv").write_text("text,meta\nc1,1\n")
    pd.DataFrame({"text": ["d1", "d2"]}).to_parquet(own / "sub" / "d.parquet")
    (own / "README.md").write_text("left out")
    assert data.read_corpus([tmp_path / "world.jsonl", own]) == ["w1", "w2", "a1", "b1", "b2", "c1", "d1", "d2"]
    assert data.read_corpus(tmp_path / "world.jsonl") == ["w1", "w2"]
    (own / "e.json").write_text(json.dumps([{"text": "e1"}, {"body": "e2"}]))
    with pytest.raises(ValueError, match=r"e\.json: record 2: field 'text': missing"):
        data.read_corpus([own])
    (own / "e.json").write_text('[{"text": 3}]')
    with pytest.raises(ValueError, match=r"e\.json: record 1: field 'text': wrong type int"):
        data.read_corpus([own])
    (own / "e.json").unlink()
    (own / "f.jsonl").write_text('{"text": "f1"}\n{"text": \n')
    with pytest.raises(ValueError, match=r"f\.jsonl: line 2: invalid JSON"):
        data.read_corpus([own])
    with pytest.raises(ValueError, match=r"notes\.txt: not a corpus file type"):
        (tmp_path / "notes.txt").write_text("x")
        data.read_corpus([tmp_path / "notes.txt"])
    with pytest.raises(ValueError, match=r"missing: no such corpus file or folder"):
        data.read_corpus([tmp_path / "missing"])
