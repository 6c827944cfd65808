"""Placeholder: the ruleset condition language (being written)."""

from __future__ import annotations

from typing import Any


class ConditionError(ValueError):
    def __init__(self, message: str, pos: int = 0) -> None:
        super().__init__(message)
        self.pos = pos


class Condition:
    def __init__(self, text: str) -> None:
        self.text = text


def parse_condition(text: str) -> Any:
    if not text.strip():
        raise ConditionError("empty condition", 0)
    return Condition(text)
