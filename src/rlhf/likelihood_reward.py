"""A reward model that adds the trunk's own log-likelihood of the response to the scalar head:

    r(x, y) = w . h_last + b + c * sum over response tokens y_t of log p(y_t | x, y_<t)

h_last is the final hidden state of the last real token (as transformers' `*ForSequenceClassification`
reads it), w and b the scalar head (with a bias, which carries the demonstrations-mean-0 shift), p the
trunk's next-token distribution through its LM head, which must be tied to the input embeddings (the
sequence-classification classes keep those and drop an untied LM head), and c the config's
`rlhf_likelihood_coef`, a fixed number. The response is every real token after the last occurrence
of the config's `rlhf_response_marker` (the token ids that end every formatted prompt, "\\nResponse:"
or a chat template's opening of the assistant's turn: `reward.response_marker`);
in a row without the marker the sum runs over every real token after the first, which changes the
reward by c * log p(prompt), the same for every response to one prompt. Families: GPT-2, Llama and
Qwen2 (`FAMILIES`), each under a model type of its own.

Why: the paper's head reads one hidden state, and a small RM trained on a few thousand noisy pairs
does not learn from it whether the words of a response are the right ones (a reversed list, a
summary, a looked-up fact), though the trunk's likelihood of them holds much of that. Adding the
likelihood gives the head that evidence and lets the ranking loss fine-tune it.

This file imports only the standard library, torch and transformers: the reward_model stage saves
a copy beside the weights (`auto_map` in config.json), so that
`AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, trust_remote_code=True)`
gives these rewards anywhere, and transformers refuses to load the folder without it. TRL's PPO
reads `model.score` on the backbone's hidden states and not `forward`, so it would see the head's
part only.
"""

from dataclasses import dataclass

import torch
from torch import nn
from transformers import (GPT2Config, GPT2ForSequenceClassification, LlamaConfig, LlamaForSequenceClassification,
                          LlamaModel, LlamaPreTrainedModel, Qwen2Config, Qwen2ForSequenceClassification, Qwen2Model,
                          Qwen2PreTrainedModel)
from transformers.modeling_outputs import SequenceClassifierOutputWithPast

COEF_KEY = "rlhf_likelihood_coef"
MARKER_KEY = "rlhf_response_marker"


def leading_padding(attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, 1]: how many padding columns come before each row's first real token."""
    return (attention_mask.long().cumsum(-1) == 0).sum(-1, keepdim=True)


def response_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, marker: list[int]) -> torch.Tensor:
    """[B, T] bool: each row's real tokens after the last occurrence of the id sequence `marker`;
    where a row has none, its real tokens after the first (on either padding side)."""
    width, m = input_ids.shape[1], len(marker)
    cols = torch.arange(width, device=input_ids.device)
    start = leading_padding(attention_mask).squeeze(1) + 1  # one past each row's first real token
    if 0 < m <= width:
        want = torch.tensor(marker, device=input_ids.device)
        hit = (input_ids.unfold(1, m, 1) == want).all(-1) & attention_mask[:, m - 1:].bool()  # [B, T-m+1]
        end = torch.where(hit, cols[:width - m + 1] + m, -1).max(1).values
        start = torch.where(end >= 0, end, start)
    return (cols.unsqueeze(0) >= start.unsqueeze(1)) & attention_mask.bool()


@dataclass
class LikelihoodRewardOutput(SequenceClassifierOutputWithPast):
    """The reward in `logits` [B, 1], and its likelihood part before the coefficient: the sum of
    log p over each row's response tokens [B] and how many tokens that is [B] (the reward model's
    training adds an LM loss on them, `reward_model.lm_coef`)."""

    response_log_likelihood: torch.Tensor | None = None
    response_tokens: torch.Tensor | None = None


class LikelihoodRewardMixin:
    """The reward above, for a `*ForSequenceClassification` class that it comes before in the bases."""

    def _likelihood_head(self, config) -> None:
        self.score = nn.Linear(config.hidden_size, 1, bias=True)
        nn.init.normal_(self.score.weight, std=config.initializer_range)
        nn.init.zeros_(self.score.bias)

    def _llama_style_init(self, config, pretrained_cls, trunk_cls) -> None:
        """What Llama's and Qwen2's `*ForSequenceClassification.__init__` do, without its
        `AutoModel.from_config`, which does not know this file's configs."""
        pretrained_cls.__init__(self, config)
        self.num_labels = config.num_labels
        self.model = trunk_cls(config)
        self._likelihood_head(config)
        self.post_init()

    def response_log_likelihood(self, hidden: torch.Tensor, input_ids: torch.Tensor,
                                attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """([B], [B]): the sum of log p(token) over each row's response tokens, from the final
        hidden states `hidden` [B, T, d] through the tied LM head (logits only where they are
        needed), and the number of those tokens."""
        mask = response_mask(input_ids, attention_mask, list(getattr(self.config, MARKER_KEY, [])))[:, 1:]
        rows = mask.nonzero(as_tuple=True)
        logits = (hidden[:, :-1][rows] @ self.get_input_embeddings().weight.T).float()
        logp = torch.log_softmax(logits, -1).gather(1, input_ids[:, 1:][rows].unsqueeze(1)).squeeze(1)
        total = torch.zeros(input_ids.shape[0], device=hidden.device).index_add(0, rows[0], logp)
        return total, mask.sum(1)

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, return_dict=None, **kwargs):
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if position_ids is None and not attention_mask[:, 0].all():
            # counted from each row's first real token, so that a left-padded batch gets the rewards
            # of the same rows right-padded or alone (the trunks count from column 0 otherwise).
            # Only where a row starts with padding: elsewhere these are the trunk's own positions, and
            # passing them would change the float rounding of training's gradients
            cols = torch.arange(input_ids.shape[1], device=input_ids.device)
            position_ids = (cols - leading_padding(attention_mask)).clamp(min=0)
        trunk = getattr(self, self.base_model_prefix)
        hidden = trunk(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        # the last real token, as transformers' classes find it: the rightmost non-padding one
        pad = self.config.pad_token_id
        real = attention_mask.bool() if pad is None else (input_ids != pad) & attention_mask.bool()
        last = (torch.arange(input_ids.shape[1], device=input_ids.device) * real).argmax(-1)
        head = self.score(hidden[torch.arange(len(last), device=last.device), last]).squeeze(-1)
        coef = float(getattr(self.config, COEF_KEY, 0.0))
        log_likelihood, tokens = self.response_log_likelihood(hidden, input_ids, attention_mask)
        return LikelihoodRewardOutput(logits=(head.float() + coef * log_likelihood).unsqueeze(-1),
                                      response_log_likelihood=log_likelihood, response_tokens=tokens)


# Each family's config under a model type of its own, so that transformers refuses to load the model
# without this file (`trust_remote_code=True`) instead of loading the head alone.

class GPT2LikelihoodRewardConfig(GPT2Config):
    model_type = "gpt2_likelihood_reward"


class GPT2LikelihoodReward(LikelihoodRewardMixin, GPT2ForSequenceClassification):
    config_class = GPT2LikelihoodRewardConfig

    def __init__(self, config):
        super().__init__(config)
        self._likelihood_head(config)


class LlamaLikelihoodRewardConfig(LlamaConfig):
    model_type = "llama_likelihood_reward"


class LlamaLikelihoodReward(LikelihoodRewardMixin, LlamaForSequenceClassification):
    config_class = LlamaLikelihoodRewardConfig

    def __init__(self, config):
        self._llama_style_init(config, LlamaPreTrainedModel, LlamaModel)


class Qwen2LikelihoodRewardConfig(Qwen2Config):
    model_type = "qwen2_likelihood_reward"


class Qwen2LikelihoodReward(LikelihoodRewardMixin, Qwen2ForSequenceClassification):
    config_class = Qwen2LikelihoodRewardConfig

    def __init__(self, config):
        self._llama_style_init(config, Qwen2PreTrainedModel, Qwen2Model)


# the base model's model_type -> (config class, model class)
FAMILIES = {"gpt2": (GPT2LikelihoodRewardConfig, GPT2LikelihoodReward),
            "llama": (LlamaLikelihoodRewardConfig, LlamaLikelihoodReward),
            "qwen2": (Qwen2LikelihoodRewardConfig, Qwen2LikelihoodReward)}
# a saved likelihood reward model's model_type -> its class
SAVED = {config_cls.model_type: model_cls for config_cls, model_cls in FAMILIES.values()}
