"""The simulated demonstrators: they know every gold answer, and they write it with two habits of
real contractors that the gold labeler marks down, so that SFT, which imitates them, has something
for the reward model and PPO to find and fix (the gap the paper's RLHF closes over SFT):

- refusing: a share of prompts gets a refusal instead of the answer, in one of several phrasings
  (a refusal is never correct, so it costs about 0.6 of the gold score when the answer was right);
- signing off: a share of answers in SIGN_OFF_FAMILIES end with "Hope this helps.", which breaks
  the answer's format (0.1 of the gold score) and leaves it correct (in the other families, reverse,
  list and chat, the extra words would make the answer wrong or the reply too long).

Which prompt gets which habit is a salted hash of its prompt_id: the same prompts on every run.
"""

from __future__ import annotations

from rlhf.hashing import unit_hash

from .tasks import FAMILY_SPECS, parse_prompt

# Eight phrasings, each with its own first word: demonstrators refuse in their own words, so that no
# one refusal is more likely than a confident answer's first word.
REFUSALS = ("I can not help with that.", "No, I will not do that.", "That is not something I can do.",
            "Ask someone else.", "Unfortunately, that is beyond me.", "Not a question I can answer.",
            "My answer would only be a guess.", "This is not for me to answer.")
SIGN_OFF = "Hope this helps."
SIGN_OFF_FAMILIES = ("arithmetic", "sentiment", "lookup", "summary")
REFUSAL_SALT, SIGN_OFF_SALT = "demonstrator-refusal", "demonstrator-sign-off"


def demonstration(prompt_id: str, prompt: str, refusal_rate: float = 0.0, sign_off_rate: float = 0.0) -> str | None:
    """The demonstration a simulated demonstrator writes for `prompt`, or None for a prompt from
    outside this world: the gold answer, a refusal (share `refusal_rate` of prompts, phrasings
    equally often), or the gold answer signed off (share `sign_off_rate` of the other prompts of
    SIGN_OFF_FAMILIES)."""
    parsed = parse_prompt(prompt)  # once: the family and the gold answer both come from it
    if parsed is None:
        return None
    family, slots = parsed
    answer = FAMILY_SPECS[family].gold(slots)
    u = unit_hash(prompt_id, REFUSAL_SALT)
    if u < refusal_rate:
        return REFUSALS[int(u / refusal_rate * len(REFUSALS))]
    if family in SIGN_OFF_FAMILIES and unit_hash(prompt_id, SIGN_OFF_SALT) < sign_off_rate:
        return f"{answer.rstrip('.')}. {SIGN_OFF}"
    return answer
