"""The embedded instruction world: a small synthetic world with program-checkable answers."""
from .generate import MALFORMED_CLASSES, generate_corpus, generate_prompt_logs, malformed_records
from .labeler import Score, contains_personal_data, score, toxicity
from .tasks import (ABSENT_ANSWER, FAMILIES, FAMILY_SPECS, POLITE_REPLY, Family, family_of,
                    gold_answer, make_prompt, parse_prompt)

__all__ = [
    "ABSENT_ANSWER", "FAMILIES", "FAMILY_SPECS", "Family", "MALFORMED_CLASSES", "POLITE_REPLY", "Score",
    "contains_personal_data", "family_of", "generate_corpus", "generate_prompt_logs",
    "gold_answer", "make_prompt", "malformed_records", "parse_prompt", "score", "toxicity",
]
