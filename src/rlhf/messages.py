"""Chat message lists, as public datasets ship conversations: OpenAI's role/content (content a
string or a list of text parts), ShareGPT's from/value, TRL's conversational records, and the same
as JSON in a CSV cell. Read by ingest (a prompt), demonstrations and comparisons (label imports)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rlhf import jsontext

ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "bot": "assistant"}


@dataclass(frozen=True)
class Message:
    """A user or assistant message of a message list: its role ("user" or "assistant"), its text as
    given (not yet checked), its place in the list and the key its text came from."""

    role: str
    content: Any
    index: int
    key: str


def content(message: dict, key: str) -> Any:
    """A message's text: a string, or OpenAI-style parts [{type: text, text: ...}] joined."""
    value = message.get(key)
    if isinstance(value, list) and all(isinstance(p, dict) and isinstance(p.get("text"), str) for p in value):
        return "".join(p["text"] for p in value)
    return value


def is_list(value: Any) -> bool:
    """A non-empty list of objects (messages, or responses given as objects), or one as JSON in a
    CSV cell."""
    if isinstance(value, str) and value.lstrip().startswith("[{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return False
    return isinstance(value, list) and bool(value) and all(isinstance(m, dict) for m in value)


def read(value: Any, name: str) -> tuple[list[Message] | None, str | None]:
    """The user and assistant messages of a message list in field `name` (OpenAI role/content, the
    content a string or text parts; ShareGPT from/value; JSON in a CSV cell), in order; system and
    other roles are left out. Or the reason it is not one."""
    if isinstance(value, str):
        value, reason = jsontext.loads_cell(value, name, "a message list")
        if reason:
            return None, reason
    if not isinstance(value, list):
        return None, f"field '{name}': wrong type {type(value).__name__}"
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            return None, f"field '{name}': message {i} is a {type(m).__name__}, not an object"
        role_key, content_key = ("from", "value") if "from" in m and "role" not in m else ("role", "content")
        role = ROLES.get(str(m.get(role_key)).lower())
        if role:
            out.append(Message(role, content(m, content_key), i, content_key))
    return out, None
