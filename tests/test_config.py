"""Config validation: unknown, missing and mistyped keys fail at start-up, naming key, section, file."""

import dataclasses

import pytest
import yaml

from rlhf import config


@pytest.fixture
def params(tmp_path):
    """The repo's params.yaml, copied so a test can break it."""
    data = config.read_params("params.yaml")
    path = tmp_path / "params.yaml"

    def write(edit=None):
        d = yaml.safe_load(yaml.safe_dump(data))
        if edit:
            edit(d)
        path.write_text(yaml.safe_dump(d))
        return path
    return write


def test_repo_params_load_and_are_frozen(params):
    cfgs = config.load_all(params())
    assert set(cfgs) == set(config.SECTIONS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfgs["sft"].lr = 1.0


def test_unknown_key_names_key_section_and_file(params):
    path = params(lambda d: d["sft"].update(learning_rate=0.1))
    with pytest.raises(config.ConfigError) as e:
        config.load("sft", path)
    assert "'learning_rate'" in str(e.value) and "'sft'" in str(e.value) and str(path) in str(e.value)


def test_missing_key(params):
    path = params(lambda d: d["ppo"].pop("kl_coef"))
    with pytest.raises(config.ConfigError, match=r"section 'ppo': missing key\(s\) 'kl_coef'"):
        config.load("ppo", path)


@pytest.mark.parametrize("section,key,value,expected", [
    ("sft", "epochs", "four", "expected int"),
    ("sft", "epochs", 2.5, "expected int"),
    ("sft", "epochs", True, "expected int"),        # a bool is not a number
    ("sft", "lr", "1e-3", "1.0e-3"),                 # YAML 1.1 reads 1e-3 as a string
    ("common", "device", "tpu", "expected one of"),
    ("pretrain", "base", 3, "expected str"),
    ("sft", "activation_checkpointing", "yes", "expected bool"),
])
def test_wrong_type(params, section, key, value, expected):
    path = params(lambda d: d[section].update({key: value}))
    with pytest.raises(config.ConfigError) as e:
        config.load(section, path)
    assert f"key '{key}'" in str(e.value) and f"'{section}'" in str(e.value) and expected in str(e.value)


@pytest.mark.parametrize("section,edit,expected", [
    ("sft", dict(r=8), r"section 'sft.lora': unknown key\(s\) 'r'; expected rank, alpha, dropout, target_modules"),
    ("reward_model", dict(rank="8"), r"section 'reward_model.lora': key 'rank': expected int"),
    ("ppo", dict(target_modules="all"), r"section 'ppo.lora': key 'target_modules': expected"),
    ("sft", dict(target_modules=[]), r"section 'sft.lora': target_modules is empty"),
    ("sft", dict(rank=-1), r"section 'sft.lora': need rank >= 0"),
])
def test_a_section_inside_a_section_is_checked_and_named(params, section, edit, expected):
    path = params(lambda d: d[section]["lora"].update(edit))
    with pytest.raises(config.ConfigError, match=expected) as e:
        config.load(section, path)
    assert str(path) in str(e.value)


def test_lora_keys_are_read_and_listed_in_help(params):
    c = config.load("sft", params(lambda d: d["sft"]["lora"].update(rank=8, target_modules=["c_attn"])))
    assert c.lora == config.LoraConfig(rank=8, alpha=16.0, dropout=0.0, target_modules=["c_attn"])
    assert config.as_dict(c)["lora"]["rank"] == 8
    from rlhf import cli

    assert "sft.lora.rank: r: rank of the update" in cli.parser("doc", ("sft",)).format_help()


def test_int_accepted_for_float(params):
    path = params(lambda d: d["ppo"].update(kl_coef=1))
    assert config.load("ppo", path).kl_coef == 1.0 and isinstance(config.load("ppo", path).kl_coef, float)


def test_unknown_and_missing_sections(params):
    with pytest.raises(config.ConfigError, match="unknown section"):
        config.load_all(params(lambda d: d.update(extra={})))
    with pytest.raises(config.ConfigError, match="missing section"):
        config.load_all(params(lambda d: d.pop("evaluate")))


def test_cross_field_validation(params):
    path = params(lambda d: d["ingest"].update(val_fraction=0.6, test_fraction=0.5))
    with pytest.raises(config.ConfigError, match="val_fraction"):
        config.load("ingest", path)


@pytest.mark.parametrize("edit,expected", [
    (dict(variants=["plain"]), "variants must hold 'ptx'"),
    (dict(variants=["ptx", "ptx"]), "each once"),
    (dict(variants="ptx"), "expected a list"),
    (dict(variants=["ptx", "ppo"]), "expected one of"),
    (dict(batch_size=12, minibatch_size=8), "multiple of minibatch_size"),
    (dict(lam=1.5), "gamma and lam"),
    (dict(max_kl=0.0), "max_kl"),
])
def test_ppo_validation(params, edit, expected):
    with pytest.raises(config.ConfigError, match=expected):
        config.load("ppo", params(lambda d: d["ppo"].update(edit)))


def test_not_a_mapping(tmp_path):
    p = tmp_path / "params.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(config.ConfigError, match="mapping"):
        config.read_params(p)
    with pytest.raises(config.ConfigError, match="not found"):
        config.read_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize("cls", [*config.SECTIONS.values(), config.LoraConfig], ids=[*config.SECTIONS, "lora"])
def test_every_field_has_a_one_line_docstring(cls):
    docs = config.describe(cls)
    for f in dataclasses.fields(cls):
        assert f.name in docs, f"{cls.__name__}.{f.name} has no docstring"
        assert docs[f.name] and "\n" not in docs[f.name]


@pytest.mark.parametrize("model_type,tied,coef,error", [
    ("llama", False, 0.15, True),
    ("gpt2", False, 0.15, True),
    ("opt", True, 0.15, True),
    ("gpt2", True, 0.15, False),
    ("qwen2", True, 0.15, False),
    ("opt", False, 0.0, False),    # the paper's head takes any family
])
def test_the_likelihood_reward_model_with_a_base_it_cannot_use_fails_at_start_up(params, model_type, tied, coef,
                                                                                   error):
    import json

    def edit(d):
        d["pretrain"]["base"] = "base"
        d["reward_model"]["likelihood_coef"] = coef
        d["reward_model"]["lm_coef"] = 1.0 if coef else 0.0
    path = params(edit)
    (path.parent / "base").mkdir()
    (path.parent / "base" / "config.json").write_text(json.dumps({"model_type": model_type,
                                                                  "tie_word_embeddings": tied}))
    if not error:
        assert config.load_all(path)["reward_model"].likelihood_coef == coef
        return
    with pytest.raises(config.ConfigError) as e:
        config.load_all(path)
    assert "reward_model.likelihood_coef" in str(e.value) and "pretrain.base 'base'" in str(e.value)
    assert str(path) in str(e.value) and model_type in str(e.value)


@pytest.mark.parametrize("section,key", [("sft", "length_groups"), ("reward_model", "average_seeds"),
                                         ("reward_model", "length_groups"), ("reward_model", "bootstrap")])
def test_counts_are_at_least_one(params, section, key):
    path = params(lambda d: d[section].update({key: 0}))
    with pytest.raises(config.ConfigError, match=f"{section}: {key} must be at least 1, got 0") as e:
        config.load_all(path)
    assert str(path) in str(e.value)


def test_length_groups_may_exceed_a_small_batch(params):
    """The default sft.length_groups 4 with sft.batch_size 2: one pass per row, not an error."""
    path = params(lambda d: d["sft"].update(batch_size=2, length_groups=4))
    assert config.load_all(path)["sft"].length_groups == 4


@pytest.mark.parametrize("likelihood_coef,lm_coef,message", [
    (0.0, 1.0, "lm_coef 1.0 needs the likelihood reward model"),
    (0.15, -0.5, "must be >= 0"),
    (-0.1, 0.0, "must be >= 0"),
])
def test_reward_model_coefficients_are_checked(params, likelihood_coef, lm_coef, message):
    def edit(d):
        d["reward_model"].update(likelihood_coef=likelihood_coef, lm_coef=lm_coef)
    path = params(edit)
    with pytest.raises(config.ConfigError, match=message) as e:
        config.load_all(path)
    assert str(path) in str(e.value) and "reward_model" in str(e.value)
