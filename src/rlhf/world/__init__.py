"""The embedded instruction world: a small synthetic world with program-checkable answers."""
from .demonstrators import REFUSALS, SIGN_OFF, demonstration
from .describe import world_description
from .generate import (MALFORMED_CLASSES, generate_corpus, generate_prompt_logs, iter_prompt_logs,
                       malformed_records)
from .labeler import Score, contains_personal_data, score, toxicity
from .pii import GENERATORS as PII_GENERATORS
from .pii import PII_TYPES, PLACEHOLDERS, plant
from .tasks import (ABSENT_ANSWER, FAMILIES, FAMILY_SPECS, POLITE_REPLY, Family, family_of,
                    gold_answer, make_prompt, make_prompt_spans, parse_prompt)

__all__ = [
    "ABSENT_ANSWER", "FAMILIES", "FAMILY_SPECS", "Family", "MALFORMED_CLASSES", "PII_GENERATORS", "PII_TYPES",
    "PLACEHOLDERS", "POLITE_REPLY", "REFUSALS", "SIGN_OFF", "Score", "contains_personal_data", "demonstration",
    "family_of", "generate_corpus", "generate_prompt_logs", "gold_answer", "iter_prompt_logs", "make_prompt",
    "make_prompt_spans", "malformed_records", "parse_prompt", "plant", "score", "toxicity", "world_description",
]
