"""JSON text that users bring: the check for lone UTF-16 surrogates, shared by the raw-file readers
(ingest) and the JSON that CSV cells hold (message lists, response lists)."""

from __future__ import annotations

import json
import re

SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # how JSON text writes a UTF-16 surrogate
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def lone_surrogate(value: object, where: str = "") -> str | None:
    """Where a parsed JSON value holds a lone UTF-16 surrogate, as the reason its record is
    quarantined (`field 'messages[1].content': ...`), or None. JSON text may escape one (`\\ud83d`
    not followed by its pair: JavaScript writes a string cut inside an emoji so), and no UTF-8 file,
    Parquet table or later stage can hold it. Only JSON text that `SURROGATE_ESCAPE` matches can
    give one."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        if found is None:
            return None
        return f"field '{where}': lone UTF-16 surrogate \\u{ord(found.group()):04x} at character {found.start()}"
    if isinstance(value, (dict, list)):
        for k, v in value.items() if isinstance(value, dict) else enumerate(value):
            if isinstance(value, list):
                inner = f"{where}[{k}]"
            else:
                name = k.encode("utf-8", "backslashreplace").decode("utf-8")
                inner = f"{where}.{name}" if where else name
                if _SURROGATE.search(k):
                    return f"field '{inner}': lone UTF-16 surrogate in the field's name"
            found = lone_surrogate(v, inner)
            if found:
                return found
    return None


def loads_cell(text: str, name: str, what: str) -> tuple[object, str | None]:
    """The JSON in a CSV cell of field `name`, and None; or None and the reason it cannot be used:
    it is not JSON (so not `what`, say "a message list"), or it holds a lone surrogate."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return None, f"field '{name}': not {what}"
    lone = lone_surrogate(value, name)
    return (None, lone) if lone else (value, None)
