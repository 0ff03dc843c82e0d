"""A JSON-ready description of the world: task families, vocabulary and PII types."""
from __future__ import annotations

from . import pii
from . import vocab as V
from .tasks import ABSENT_ANSWER, FAMILY_SPECS, PII_SLOTS, POLITE_REPLY

_VOCAB = ("COLOURS", "ANIMALS", "FRUITS", "OBJECTS", "ADJECTIVES", "NAMES", "NUMBER_WORDS", "REVIEW_NOUNS",
          "POSITIVE_WORDS", "NEGATIVE_WORDS", "TOXIC_ADJECTIVES", "TOXIC_NOUNS", "TOXIC_WORDS")


def world_description() -> dict:
    """Everything a reader needs to know what this world's prompts and personal data look like.

    Keys: ``families`` (name -> templates, slot regexes, which slots hold PII), ``vocab`` (word
    lists by name, plus ``categories``), ``pii_types``, ``placeholders`` (what a scrubber writes
    for each type), ``pii`` (the planting phrasings and the name/street lists values come from),
    ``absent_answer`` and ``polite_reply``. Only lists, dicts and strings: ``json.dumps`` works.
    """
    families = {
        name: {"templates": list(f.templates), "slots": dict(f.slots),
               "pii_slots": {s: t for s, t in PII_SLOTS.items() if s in f.slots}}
        for name, f in FAMILY_SPECS.items()
    }
    vocab = {name.lower(): list(getattr(V, name)) for name in _VOCAB}
    vocab["categories"] = {k: list(v) for k, v in V.CATEGORIES.items()}
    return {
        "families": families,
        "vocab": vocab,
        "pii_types": list(pii.PII_TYPES),
        "placeholders": dict(pii.PLACEHOLDERS),
        "pii": {
            "phrasings": {"before": list(pii.PRE), "lead": list(pii.LEAD), "after": list(pii.POST)},
            "extra_names": list(pii.EXTRA_NAMES), "surnames": list(pii.SURNAMES),
            "email_domains": list(pii.EMAIL_DOMAINS), "street_words": list(pii.STREET_WORDS),
            "street_suffixes": list(pii.STREET_SUFFIXES), "cities": list(pii.CITIES),
            "iban_lengths": dict(pii.IBAN_LENGTHS),
        },
        "absent_answer": ABSENT_ANSWER,
        "polite_reply": POLITE_REPLY,
    }
