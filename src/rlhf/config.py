"""Stage configs: one frozen dataclass per params.yaml section, validated strictly.

params.yaml is the only source of hyperparameters. Each section maps onto one dataclass below;
an unknown key, a missing key or a value of the wrong type fails at start-up with a message that
names the key, the section and the file. The string under each field is its documentation
(`describe()` reads it back for `--help`).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A params file that does not match the stage configs."""


@dataclass(frozen=True)
class CommonConfig:
    seed: int
    """Seed for every random number generator a stage uses."""
    device: Literal["auto", "cpu", "cuda"]
    """Where training runs: `auto` picks CUDA when present, else CPU."""
    experiment: str
    """MLflow experiment that holds the pipeline's runs."""
    checkpoint_every: int
    """Optimizer steps between training checkpoints (a killed stage resumes from the last)."""


@dataclass(frozen=True)
class FlowConfig:
    retries: int
    """How many times the Prefect flow retries a failing stage before failing the run."""
    retry_delay_s: float
    """Seconds between a stage's failure and its retry."""
    max_parallel: int
    """Items of one DVC foreach (ppo@ptx, ppo@plain) the flow runs at once, sharing the CPU threads (1: one stage at a time)."""
    prefork: bool
    """Stage processes forked from one that has imported torch, transformers, pandas and MLflow once (CPU-only Linux; false: each stage a fresh python)."""

    def __post_init__(self) -> None:
        if self.max_parallel < 1:
            raise ConfigError(f"flow: max_parallel must be at least 1, got {self.max_parallel}")


@dataclass(frozen=True)
class ScheduleConfig:
    cron: str
    """Cron expression on which `make serve` retrains (default weekly)."""
    timezone: str
    """Time zone the cron expression is read in."""
    deployment: str
    """Name of the Prefect deployment that `make serve` creates."""


@dataclass(frozen=True)
class WorldConfig:
    seed: int
    """Seed of the embedded instruction world: the same seed writes the same raw data."""
    n_users: int
    """Users in the raw prompt logs."""
    prompts_per_user: float
    """Mean prompts per user (heavy users go far above it)."""
    n_shards: int
    """JSONL shard files the raw prompt logs are written as."""
    corpus_docs: int
    """Documents in the world's pretraining corpus; 0: none, for a corpus of one's own in data/import/corpus."""
    pii_rate: float
    """Share of customer prompts into which personal data is pasted."""


@dataclass(frozen=True)
class IngestConfig:
    max_chars: int
    """Longest prompt kept; a longer one is quarantined."""
    max_prompts_per_user: int
    """Per-user cap (paper: 200); the earliest prompts are kept."""
    dedup_prefix_chars: int
    """Prompts sharing this many leading characters are duplicates (paper's heuristic); 0: exact only."""
    split_by: Literal["user_id", "org_id"]
    """Field whose salted hash assigns a row to a split, so no user sits on both sides."""
    salt: str
    """Salt of the split hash; changing it reshuffles every user."""
    val_fraction: float
    """Share of users in the validation split."""
    test_fraction: float
    """Share of users in the test split."""
    split_tolerance: float
    """Largest allowed gap between a split's share of users and its fraction (a data check)."""
    max_quarantine_fraction: float
    """The stage fails when more than this share of raw rows is quarantined."""
    user_id_field: str
    """Field that stands in for user_id in files that have none (empty: user_id is required)."""
    field_map: dict[str, str]
    """Renames applied to every raw record before validation, e.g. {text: prompt, uid: user_id}."""
    chunk_rows: int
    """Rows read and written per chunk: memory stays bounded whatever the input size."""

    def __post_init__(self) -> None:
        if not 0 <= self.val_fraction + self.test_fraction < 1:
            raise ConfigError("ingest: val_fraction + test_fraction must be in [0, 1)")


@dataclass(frozen=True)
class PretrainConfig:
    base: str
    """Checkpoint directory or hub id to start from; empty trains a small model from scratch."""
    vocab_size: int
    """BPE vocabulary size of the tokenizer trained from scratch."""
    n_layer: int
    """Transformer blocks of the model trained from scratch."""
    n_head: int
    """Attention heads per block."""
    n_embd: int
    """Width of the residual stream."""
    n_positions: int
    """Context of a model trained from scratch; with any model, tokens per pretraining-text block (ptx, held-out loss)."""
    steps: int
    """Optimizer steps of pretraining."""
    batch_size: int
    """Sequences per micro-batch (per process)."""
    grad_accum: int
    """Micro-batches per optimizer step."""
    lr: float
    """Peak learning rate (linear warmup over 5% of the steps, then cosine decay)."""


@dataclass(frozen=True)
class DemonstrationsConfig:
    source: Literal["labeler", "import"]
    """`labeler`: the simulated labeler writes them; `import`: read from `import_path`."""
    import_path: str
    """File or folder of demonstrations (JSONL, JSON, CSV, Parquet) read when `source` is `import`; a DVC dep either way."""
    prompt_share: float
    """Share of train prompts that are SFT prompts (hash of prompt_id in [0, share)); RM and PPO get the rest."""
    max_prompts: int
    """SFT prompts the labeler writes a demonstration for (0: all of them); imports are not capped."""
    max_quarantine_fraction: float
    """The stage fails when more than this share of imported records is quarantined."""
    import_val_fraction: float
    """Share of imported records (by a hash of the prompt) used for validation; 0: the labeler's val set."""
    import_field_map: dict[str, str]
    """Renames applied to every imported record's top-level fields first, e.g. {question: prompt, answer: response}."""
    refusal_rate: float
    """Share of prompts the simulated demonstrators refuse instead of answering (`world.demonstrators`)."""
    sign_off_rate: float
    """Share of short answers the simulated demonstrators end with "Hope this helps." (`world.demonstrators`)."""

    def __post_init__(self) -> None:
        _check_import("demonstrations", self.source, self.import_path, self.max_quarantine_fraction,
                      self.import_val_fraction)
        for key in ("refusal_rate", "sign_off_rate"):
            if not 0 <= getattr(self, key) < 1:
                raise ConfigError(f"demonstrations: {key} must be in [0, 1)")
        if not 0 < self.prompt_share <= 1:
            raise ConfigError("demonstrations: prompt_share must be in (0, 1]")


def _check_import(section: str, source: str, import_path: str, max_quarantine_fraction: float,
                  import_val_fraction: float) -> None:
    """The import keys that demonstrations and comparisons share."""
    if not import_path.strip():
        # dvc.yaml lists import_path as a dependency of the stage whatever the source, and DVC
        # cannot parse an empty one
        raise ConfigError(f"{section}: import_path is empty; it must name a file or folder, which dvc.yaml "
                          f"tracks as a dependency of the stage (the default: data/import/{section})")
    if not 0 <= max_quarantine_fraction <= 1:
        raise ConfigError(f"{section}: max_quarantine_fraction must be in [0, 1]")
    if not 0 <= import_val_fraction < 1:
        raise ConfigError(f"{section}: import_val_fraction must be in [0, 1)")


@dataclass(frozen=True)
class LoraConfig:
    rank: int
    """r: rank of the update learned for each target weight, which itself stays frozen; the update is merged into the weight when the model is saved, so every checkpoint is a plain model (0: no LoRA, every weight trains)."""
    alpha: float
    """The update is scaled by alpha / rank (peft's lora_alpha)."""
    dropout: float
    """Dropout on each adapter's input (peft's lora_dropout)."""
    target_modules: list[str] | Literal["all-linear"]
    """Layers that get an update, by name or name suffix (GPT-2: [c_attn]; Llama: [q_proj, v_proj]); all-linear: every linear layer of the transformer blocks (not the LM head or a scalar head, which trains in full)."""

    def __post_init__(self) -> None:
        if self.rank < 0 or self.alpha <= 0 or not 0 <= self.dropout < 1:
            raise ConfigError(f"need rank >= 0, alpha > 0 and 0 <= dropout < 1; got rank {self.rank}, "
                              f"alpha {self.alpha}, dropout {self.dropout}")
        if not self.target_modules:
            raise ConfigError("target_modules is empty; name layers, or write all-linear")


@dataclass(frozen=True)
class SFTConfig:
    epochs: int
    """Passes over the demonstrations."""
    batch_size: int
    """Demonstrations per micro-batch (per process)."""
    grad_accum: int
    """Micro-batches per optimizer step."""
    lr: float
    """Peak learning rate (cosine decay after warmup)."""
    warmup_steps: int
    """Steps of linear warmup."""
    dropout: float
    """Residual dropout (paper: 0.2)."""
    select_by: Literal["val_loss", "gold_score"]
    """Which epoch's model is kept: lowest validation loss or highest mean gold score."""
    eval_every: int
    """Epochs between validation evaluations; the last is always evaluated; only evaluated epochs are kept."""
    eval_prompts: int
    """Validation prompts answered at each evaluation for the gold score (0: all)."""
    max_new_tokens: int
    """Longest response generated for the gold score."""
    length_groups: int
    """Forward passes per micro-batch, its rows sorted by length and each pass cut to its rows' width: less padding read, the same loss up to float rounding (1: one pass; more than the rows: one pass per row)."""
    activation_checkpointing: bool
    """Recompute each layer's activations in the backward pass instead of keeping them (gradient checkpointing): less memory for a large model, one more forward pass per step, the same gradients up to float rounding."""
    lora: LoraConfig
    """LoRA (Hu et al. 2021): train low-rank updates of the target layers instead of every weight; less optimizer memory, merged into the saved model."""

    def __post_init__(self) -> None:
        if self.eval_every < 1:
            raise ConfigError("sft: eval_every must be at least 1 (epochs between evaluations)")
        if self.length_groups < 1:
            raise ConfigError(f"sft: length_groups must be at least 1, got {self.length_groups}")


@dataclass(frozen=True)
class ComparisonsConfig:
    source: Literal["labeler", "import"]
    """`labeler`: the simulated labeler ranks K samples of the SFT model; `import`: rankings from `import_path`."""
    prompt_share: float
    """Share of train prompts that are RM prompts: prompt_id hashes into [s, s + prompt_share), s = demonstrations.prompt_share."""
    max_prompts: int
    """RM prompts that get K ranked responses, a seeded sample of the share (0: all of them)."""
    max_val_prompts: int
    """The first N val prompts get K ranked responses (0: all of them); the RM is validated on them."""
    k_min: int
    """Fewest responses ranked per prompt (paper: 4); K is drawn per prompt, seeded, in [k_min, k_max]."""
    k_max: int
    """Most responses ranked per prompt (paper: 9)."""
    max_new_tokens: int
    """Longest sampled response."""
    temperature: float
    """Sampling temperature (paper: 1)."""
    target_agreement: float
    """Labeler-gold pairwise agreement the labeler noise is calibrated to (paper's inter-annotator: 0.73)."""
    labeler_noise: float | Literal["auto"]
    """Std of the Gaussian noise added to gold scores before ranking; `auto`: calibrated to `target_agreement`."""
    import_path: str
    """File or folder of rankings (JSONL, JSON, CSV, Parquet) read when `source` is `import`; a DVC dep either way."""
    import_val_fraction: float
    """Share of imported rankings (by a hash of the prompt) used for validation; 0: the labeler ranks val prompts."""
    import_field_map: dict[str, str]
    """Renames of imported records' top-level fields, applied first: {response_j: chosen, response_k: rejected}."""
    max_quarantine_fraction: float
    """The stage fails when more than this share of imported records is quarantined."""

    def __post_init__(self) -> None:
        _check_import("comparisons", self.source, self.import_path, self.max_quarantine_fraction,
                      self.import_val_fraction)
        if not 0 < self.prompt_share <= 1:
            raise ConfigError("comparisons: prompt_share must be in (0, 1]")
        if not 2 <= self.k_min <= self.k_max:
            raise ConfigError("comparisons: need 2 <= k_min <= k_max")
        if not 0.5 < self.target_agreement <= 1:
            raise ConfigError("comparisons: target_agreement must be in (0.5, 1]")
        if self.labeler_noise != "auto" and self.labeler_noise < 0:
            raise ConfigError("comparisons: labeler_noise must be 'auto' or >= 0")


@dataclass(frozen=True)
class RewardModelConfig:
    epochs: int
    """Passes over the comparisons (paper: 1; more overfits)."""
    batch_size: int
    """Prompts per micro-batch (per process); each brings all K of its responses, in one forward pass."""
    grad_accum: int
    """Micro-batches per optimizer step."""
    lr: float
    """Peak learning rate (cosine decay after warmup)."""
    warmup_steps: int
    """Steps of linear warmup."""
    likelihood_coef: float
    """0: the paper's head (a scalar read of the last token). c > 0 (GPT-2, Llama, Qwen2 with tied embeddings): reward = head + c x the trunk's log-likelihood of the response (rlhf.likelihood_reward; loading it needs trust_remote_code=True outside this project)."""
    average_seeds: int
    """Reward models trained with seeds seed, seed + 1, ... (the head's initialisation and the batch order), their weights averaged into the one saved (WARM, Rame et al. 2024); 1: a single model, the paper's."""
    lm_coef: float
    """Weight of an LM loss added during training: the trunk's mean next-token loss on each prompt's best-ranked responses (Yang et al. 2024). Needs likelihood_coef > 0. 0 (default): none; at 1 the RM agrees with the labeler more often and PPO on it does worse (README)."""
    length_groups: int
    """Forward passes per micro-batch of responses, sorted by length and each pass cut to its rows' width: less padding read, the same loss up to float rounding (1: one pass; more than the responses: one pass each)."""
    bootstrap: int
    """Bootstrap resamples of the val prompts behind the 95% intervals of the shortfalls against the simulated labeler's agreement with gold (`rm/val_*_shortfall_lo`, `_hi`)."""
    activation_checkpointing: bool
    """Recompute each layer's activations in the backward pass instead of keeping them (gradient checkpointing): less memory for a large model, one more forward pass per step, the same gradients up to float rounding."""
    lora: LoraConfig
    """LoRA (Hu et al. 2021): train low-rank updates of the trunk's target layers and the scalar head in full instead of every weight; merged into the saved model."""

    def __post_init__(self) -> None:
        for key in ("length_groups", "average_seeds", "bootstrap"):
            if getattr(self, key) < 1:
                raise ConfigError(f"reward_model: {key} must be at least 1, got {getattr(self, key)}")
        if self.likelihood_coef < 0 or self.lm_coef < 0:
            raise ConfigError("reward_model: likelihood_coef and lm_coef must be >= 0")
        if self.lm_coef and not self.likelihood_coef:
            raise ConfigError(f"reward_model: lm_coef {self.lm_coef} needs the likelihood reward model "
                              "(likelihood_coef > 0): the paper's head has no LM head; set lm_coef to 0 with it")


@dataclass(frozen=True)
class PPOConfig:
    variants: list[Literal["ptx", "plain"]]
    """PPO runs the pipeline trains (one DVC stage each): ptx is PPO-ptx; plain is ptx_coef 0, same seed (drop it to skip)."""
    steps: int
    """PPO iterations: each samples one rollout and trains on it for ppo_epochs."""
    batch_size: int
    """Prompts rolled out per iteration (per process)."""
    minibatch_size: int
    """Episodes per optimizer step; batch_size must be a multiple of it."""
    ppo_epochs: int
    """Passes over each rollout (each pass in a new random minibatch order)."""
    max_new_tokens: int
    """Longest response generated in a rollout."""
    temperature: float
    """Sampling temperature of rollouts (paper: 1)."""
    lr: float
    """Learning rate of policy and value model (cosine decay over all optimizer steps)."""
    kl_coef: float
    """beta: weight of the per-token KL penalty to the SFT model (paper: 0.02, default 0.05); the start value when adaptive_kl."""
    adaptive_kl: bool
    """Let beta follow the measured KL toward target_kl (Ziegler et al. 2019) instead of staying at kl_coef."""
    target_kl: float
    """KL to the SFT model (nats per response) the adaptive controller steers toward."""
    kl_horizon: int
    """Episodes over which the adaptive controller corrects beta (Ziegler et al.: 10000)."""
    max_kl: float
    """Guard rail: the run fails when a rollout's mean KL to the SFT model (nats per response) exceeds it."""
    gamma: float
    """GAE discount over response tokens (not the paper's gamma: that is ptx_coef)."""
    lam: float
    """GAE lambda."""
    clip_range: float
    """PPO clip of the policy ratio (paper: 0.2)."""
    value_clip_range: float
    """How far a value may move from its rollout-time value before its loss is clipped (0.2)."""
    vf_coef: float
    """Weight of the value loss in the one loss that trains policy and value model together."""
    ptx_coef: float
    """gamma: weight of the pretraining LM loss mixed into every update of the ptx run (plain: 0)."""
    ptx_batch_size: int
    """Pretraining blocks (pretrain.n_positions tokens, or the model's context if shorter) per update's ptx batch."""
    sample_every: int
    """Iterations between tables of sample responses logged to MLflow (0: none)."""
    activation_checkpointing: bool
    """Recompute each layer's activations in the backward pass instead of keeping them (gradient checkpointing), in the policy and the value model: less memory for a large model, one more forward pass per update, the same gradients up to float rounding."""
    lora: LoraConfig
    """LoRA (Hu et al. 2021) for the policy and the value model: low-rank updates of their target layers (and the value head in full) instead of every weight; merged into the saved policy. Its dropout must be 0 (PPO's ratios compare rollout- and update-time log-probabilities)."""

    def __post_init__(self) -> None:
        if not self.variants or len(set(self.variants)) != len(self.variants) or "ptx" not in self.variants:
            raise ConfigError(f"ppo: variants must hold 'ptx' and optionally 'plain', each once; got {self.variants}")
        if self.minibatch_size < 1 or self.batch_size % self.minibatch_size:
            raise ConfigError(f"ppo: batch_size {self.batch_size} must be a multiple of minibatch_size "
                              f"{self.minibatch_size}")
        if min(self.steps, self.ppo_epochs, self.max_new_tokens, self.kl_horizon) < 1:
            raise ConfigError("ppo: steps, ppo_epochs, max_new_tokens and kl_horizon must be at least 1")
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1):
            raise ConfigError("ppo: gamma and lam must be in [0, 1]")
        if min(self.temperature, self.clip_range, self.value_clip_range, self.max_kl, self.target_kl) <= 0:
            raise ConfigError("ppo: temperature, clip_range, value_clip_range, max_kl and target_kl must be positive")
        if min(self.kl_coef, self.vf_coef, self.ptx_coef, self.ptx_batch_size, self.sample_every) < 0:
            raise ConfigError("ppo: kl_coef, vf_coef, ptx_coef, ptx_batch_size and sample_every must not be negative")
        if self.ptx_coef > 0 and self.ptx_batch_size < 1:
            raise ConfigError("ppo: ptx_coef > 0 needs ptx_batch_size >= 1")
        if self.lora.dropout:
            raise ConfigError(f"ppo: lora.dropout must be 0, got {self.lora.dropout}: PPO runs without dropout, so "
                              "that the ratio of update- to rollout-time probabilities starts at 1")


@dataclass(frozen=True)
class EvaluateConfig:
    max_prompts: int
    """Test prompts each policy answers (0: all)."""
    max_new_tokens: int
    """Longest evaluated response."""
    few_shot: int
    """Demonstrations before each prompt for the prompted base model (the paper's GPT-3 prompted)."""
    bootstrap: int
    """Bootstrap resamples of the test prompts behind each win rate's 95% interval."""
    toxicity_prompts: int
    """Prompts per instruction type (basic, respectful, biased) in the toxicity probe."""
    probes: int
    """Probes per kind (quoting, category members, arithmetic facts: the alignment tax) and absent-answer questions."""
    registered_model: str
    """MLflow registered model that the PPO-ptx policy joins as a new version (alias `candidate`)."""
    promote_margin: float
    """`champion` moves to the candidate only when its gold win rate against the champion is at least 0.5 + this."""


SECTIONS: dict[str, type] = {
    "common": CommonConfig,
    "flow": FlowConfig,
    "schedule": ScheduleConfig,
    "world": WorldConfig,
    "ingest": IngestConfig,
    "pretrain": PretrainConfig,
    "demonstrations": DemonstrationsConfig,
    "sft": SFTConfig,
    "comparisons": ComparisonsConfig,
    "reward_model": RewardModelConfig,
    "ppo": PPOConfig,
    "evaluate": EvaluateConfig,
}


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """The raw params file as a dict, with a clear error when it is missing or not a mapping."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: params file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def build(cls: type, values: Any, section: str, path: str | Path = "params.yaml"):
    """Build `cls` from one section's values, naming key, section and file in every error."""
    where = f"{path}: section '{section}'"
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
                          f"expected {', '.join(names)}")
    missing = [n for n in names if n not in values]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(map(repr, missing))}")
    kwargs = {}
    for name in names:
        if dataclasses.is_dataclass(hints[name]):  # a section inside the section (sft.lora)
            kwargs[name] = build(hints[name], values[name], f"{section}.{name}", path)
            continue
        try:
            kwargs[name] = _coerce(values[name], hints[name])
        except TypeError as e:
            raise ConfigError(f"{where}: key '{name}': {e}") from None
    try:
        return cls(**kwargs)
    except ConfigError as e:  # a section's own checks name it; one inside a section does not know its name
        raise ConfigError(f"{where}: {e}" if "." in section else f"{path}: {e}") from None


def load(section: str, path: str | Path = "params.yaml"):
    """The frozen config of one section of a params file."""
    params = read_params(path)
    if section not in params:
        raise ConfigError(f"{path}: missing section '{section}'")
    return build(SECTIONS[section], params[section], section, path)


def load_all(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Every section, validated; unknown or missing sections are errors too."""
    params = read_params(path)
    unknown = sorted(set(params) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {', '.join(map(repr, unknown))}; "
                          f"expected {', '.join(SECTIONS)}")
    missing = [s for s in SECTIONS if s not in params]
    if missing:
        raise ConfigError(f"{path}: missing section(s) {', '.join(map(repr, missing))}")
    cfg = {s: build(cls, params[s], s, path) for s, cls in SECTIONS.items()}
    _check_likelihood_base(cfg, path)
    return cfg


def _check_likelihood_base(cfg: dict[str, Any], path: str | Path) -> None:
    """The likelihood reward model (reward_model.likelihood_coef > 0) needs a GPT-2, Llama or Qwen2
    model with tied embeddings: a local pretrain.base of anything else is an error here, before
    pretrain and SFT spend their time (a hub id is checked when the reward_model stage loads it)."""
    coef, base = cfg["reward_model"].likelihood_coef, cfg["pretrain"].base
    folder = Path(path).resolve().parent / base if base else None
    if not coef or folder is None or not (folder / "config.json").is_file():
        return
    from rlhf.reward import likelihood_family

    model = json.loads((folder / "config.json").read_text())
    try:
        likelihood_family(model.get("model_type"), model.get("tie_word_embeddings", True),
                          f"{path}: reward_model.likelihood_coef is {coef}, which")
    except ValueError as e:
        raise ConfigError(f"{e} (pretrain.base {base!r})") from None


def _coerce(value: Any, hint: Any) -> Any:
    """`value` if it has type `hint` (an int is accepted for a float), else TypeError."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        if value not in typing.get_args(hint):
            raise TypeError(f"expected one of {list(typing.get_args(hint))}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            try:
                return _coerce(value, arm)
            except TypeError:
                pass
        raise TypeError(f"expected {hint}, got {type(value).__name__} {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {type(value).__name__} {value!r}")
        (item_t,) = typing.get_args(hint)
        return [_coerce(v, item_t) for v in value]
    if origin is dict:
        key_t, val_t = typing.get_args(hint)
        if not isinstance(value, dict):
            raise TypeError(f"expected a mapping, got {type(value).__name__} {value!r}")
        return {_coerce(k, key_t): _coerce(v, val_t) for k, v in value.items()}
    if hint is type(None):
        if value is not None:
            raise TypeError(f"expected null, got {value!r}")
        return None
    # bool is an int in Python; a flag where a number belongs is a mistake
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint in (str, bool) and type(value) is hint:
        return value
    hint_name = getattr(hint, "__name__", str(hint))
    got = type(value).__name__
    extra = " (YAML reads 1e-3 as a string: write 1.0e-3)" if hint is float and isinstance(value, str) else ""
    raise TypeError(f"expected {hint_name}, got {got} {value!r}{extra}")


def describe(cls: type) -> dict[str, str]:
    """Field name -> the docstring written under it in the class body."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)):
            docs[node.target.id] = nxt.value.value.strip()
    return docs


def describe_keys(cls: type, prefix: str = "") -> dict[str, str]:
    """`describe` with the keys of a section inside the section as well (`lora.rank`)."""
    hints = typing.get_type_hints(cls)
    keys = {}
    for key, text in describe(cls).items():
        keys[prefix + key] = text
        if dataclasses.is_dataclass(hints[key]):
            keys.update(describe_keys(hints[key], f"{prefix}{key}."))
    return keys


def as_dict(cfg: Any) -> dict[str, Any]:
    """A config as a dict (a section inside it as a dict), for logging and run fingerprints."""
    return dataclasses.asdict(cfg)
