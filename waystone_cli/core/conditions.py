"""The ruleset condition language (SPEC §6): the parser.

Grammar (precedence ``not`` > ``and`` > ``or``; parentheses group)::

    cond  := and ("or" and)*          and  := unary ("and" unary)*
    unary := "not" unary | "(" cond ")" | term
    term  := "always" | "has group" | [SCOPE "."] "joined within" DURATION
           | FIELD ("=" | "!=") VALUE | FIELD "is" ("true" | "false") | FIELD "exists"

SCOPE is ``user`` or ``group``; FIELD is an identifier (letters, digits, ``_``, ``-``), or
``SCOPE.name[.name...]``.  VALUE is a bare word (letters, digits, ``-_.:@/+``) or a quoted
string (``"..."`` or ``'...'``, backslash escapes).  ``and``, ``or`` and ``not`` are reserved;
``always``, ``has`` and ``joined`` are keywords only where a term starts and no operator
follows, so they still work as field names.  DURATION is ``windows.parse_duration``'s.

Errors point at the offending token; positions are 0-based character offsets.  What a
condition means, and whom a ruleset applies to, is in ``condition_tree``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from waystone_cli.core.condition_tree import (
    SCOPES,
    Always,
    BoolOp,
    Condition,
    Facts,
    Field,
    FieldTerm,
    HasGroup,
    JoinedWithin,
    Node,
    Not,
)
from waystone_cli.core.errors import UsageError
from waystone_cli.core.windows import WindowError, parse_duration

__all__ = ["Condition", "ConditionError", "Facts", "parse_condition"]

_RESERVED = ("and", "or", "not")
_OPERATORS = ("=", "!=", "is", "exists")
_MAX_DEPTH = 64
_TOKEN = re.compile(r"\s*(?:(?P<op>!=|=|\(|\))|(?P<word>[\w\-.:@/+]+)|(?P<quote>[\"']))")
_IDENT = re.compile(r"^[\w\-]+$")
_NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?([eE][+-]?\d+)?$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r"}


class ConditionError(UsageError, ValueError):
    """A condition does not parse; ``pos`` is the offending token's offset."""

    def __init__(self, message: str, pos: int = 0) -> None:
        super().__init__(message)
        self.pos = pos


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "string", "op", "end"
    text: str  # as written (strings with their quotes)
    pos: int
    value: str = ""  # a string's decoded content

    def shown(self) -> str:
        return self.text if self.kind == "string" else f'"{self.text}"'


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while text[pos:].strip():
        m = _TOKEN.match(text, pos)
        start = len(text) - len(text[pos:].lstrip())
        if m is None:
            raise ConditionError(f'unexpected character "{text[start]}" at position {start}', start)
        start = m.start(m.lastgroup or 0)
        if m.group("quote"):
            token, pos = _string(text, start)
            tokens.append(token)
            continue
        kind = "op" if m.group("op") else "word"
        tokens.append(_Token(kind, m.group(m.lastgroup or 0), start))
        pos = m.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _string(text: str, start: int) -> tuple[_Token, int]:
    quote, out, i = text[start], [], start + 1
    while i < len(text) and text[i] != quote:
        if text[i] == "\\" and i + 1 < len(text):
            i += 1
            out.append(_ESCAPES.get(text[i], text[i]))
        else:
            out.append(text[i])
        i += 1
    if i >= len(text):
        raise ConditionError(f"unterminated string starting at position {start}", start)
    return _Token("string", text[start : i + 1], start, "".join(out)), i + 1


class _Parser:
    """Recursive descent over the token list; one instance per parse."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        tok = self.peek()
        self.i += 1
        return tok

    def last(self) -> _Token:
        return self.tokens[self.i - 1]

    def is_word(self, tok: _Token, *words: str) -> bool:
        return tok.kind == "word" and tok.text in words

    def expected(self, what: str, after: _Token, choices: Sequence[str] = ()) -> ConditionError:
        found = self.peek()
        if found.kind == "end":
            return ConditionError(
                f"expected {what} after {after.shown()} at position {after.pos}", after.pos
            )
        close = difflib.get_close_matches(found.text, choices, n=1) if found.kind == "word" else []
        if close:
            msg = (
                f'unknown word "{found.text}" at position {found.pos} (did you mean "{close[0]}"?)'
            )
            return ConditionError(msg, found.pos)
        msg = (
            f"expected {what} after {after.shown()}, found {found.shown()} at position {found.pos}"
        )
        return ConditionError(msg, found.pos)

    def parse(self) -> Node:
        node = self.either()
        tok = self.peek()
        if tok.kind != "end":
            raise self.trailing(tok, '"and", "or" or the end')
        return node

    def trailing(self, tok: _Token, wanted: str) -> ConditionError:
        close = (
            difflib.get_close_matches(tok.text, ["and", "or"], n=1) if tok.kind == "word" else []
        )
        if close:
            msg = f'unknown word "{tok.text}" at position {tok.pos} (did you mean "{close[0]}"?)'
            return ConditionError(msg, tok.pos)
        return ConditionError(
            f"unexpected {tok.shown()} at position {tok.pos} (expected {wanted})", tok.pos
        )

    def either(self) -> Node:
        children = [self.both()]
        while self.is_word(self.peek(), "or"):
            self.take()
            children.append(self.both())
        return children[0] if len(children) == 1 else BoolOp("or", tuple(children))

    def both(self) -> Node:
        children = [self.unary()]
        while self.is_word(self.peek(), "and"):
            self.take()
            children.append(self.unary())
        return children[0] if len(children) == 1 else BoolOp("and", tuple(children))

    def unary(self) -> Node:
        tok = self.peek()
        if self.depth >= _MAX_DEPTH:
            raise ConditionError(f"condition nested too deeply at position {tok.pos}", tok.pos)
        self.depth += 1
        try:
            if self.is_word(tok, "not"):
                self.take()
                return Not(self.unary())
            if tok.kind == "op" and tok.text == "(":
                return self.group()
            return self.term()
        finally:
            self.depth -= 1

    def group(self) -> Node:
        opening = self.take()
        node = self.either()
        tok = self.peek()
        if tok.kind == "end":
            raise ConditionError(f'unclosed "(" at position {opening.pos}', opening.pos)
        if tok.text != ")" or tok.kind != "op":
            raise self.trailing(tok, '"and", "or" or ")"')
        self.take()
        return node

    def term(self) -> Node:
        tok = self.peek()
        if tok.kind == "end":
            if self.i == 0:
                raise ConditionError("empty condition", 0)
            after = self.last()
            raise ConditionError(
                f"expected a condition after {after.shown()} at position {after.pos}", after.pos
            )
        if tok.kind != "word" or tok.text in _RESERVED:
            raise ConditionError(f"unexpected {tok.shown()} at position {tok.pos}", tok.pos)
        nxt = self.peek(1)
        if (nxt.kind == "op" and nxt.text in ("=", "!=")) or self.is_word(nxt, "is", "exists"):
            return self.field_term()
        return self.keyword_term()

    def keyword_term(self) -> Node:
        tok = self.take()
        if tok.text == "always":
            return Always(tok.text)
        if tok.text == "has":
            if not self.is_word(self.peek(), "group"):
                raise self.expected('"group"', tok, ["group"])
            self.take()
            return HasGroup(self.source(tok.pos))
        scope, _, name = tok.text.rpartition(".")
        if name == "joined" and (scope == "" or _scope(scope, tok)):
            return self.joined(tok, scope or None)
        raise self.no_operator(tok)

    def no_operator(self, tok: _Token) -> ConditionError:
        """A word that starts a term but is no keyword and has no operator after it."""
        nxt = self.peek()
        guess = difflib.get_close_matches(tok.text, ["always", "has", "joined"], n=1)
        if tok.text in SCOPES and nxt.kind == "word":
            guess, tok = [f"{tok.text}.{nxt.text}"], nxt
        if guess:
            msg = f'unknown word "{tok.text}" at position {tok.pos} (did you mean "{guess[0]}"?)'
            return ConditionError(msg, tok.pos)
        _field(tok)  # a malformed field name is the better error
        return self.expected('"=", "!=", "is" or "exists"', tok, _OPERATORS)

    def joined(self, tok: _Token, scope: str | None) -> Node:
        if not self.is_word(self.peek(), "within"):
            raise self.expected('"within"', tok, ["within"])
        within = self.take()
        dur = self.peek()
        if dur.kind != "word":
            raise self.expected("a duration", within)
        try:
            duration = parse_duration(dur.text)
        except WindowError:
            msg = f'invalid duration "{dur.text}" at position {dur.pos} (like 30m, 24h, 7d or 2w)'
            raise ConditionError(msg, dur.pos) from None
        self.take()
        return JoinedWithin(self.source(tok.pos), scope, duration)

    def field_term(self) -> Node:
        tok = self.take()
        field = _field(tok)
        op = self.take()
        if op.text == "exists":
            return FieldTerm(self.source(tok.pos), field, "exists")
        if op.text == "is":
            if not self.is_word(self.peek(), "true", "false"):
                raise self.expected('"true" or "false"', op, ["true", "false"])
            want = self.take().text == "true"
            return FieldTerm(self.source(tok.pos), field, "is", want=want)
        values = self.value(op)
        return FieldTerm(self.source(tok.pos), field, op.text, values)

    def value(self, op: _Token) -> frozenset[str]:
        tok = self.peek()
        if tok.kind == "string":
            self.take()
            return frozenset({tok.value})
        if tok.kind != "word" or tok.text in _RESERVED:
            raise self.expected("a value", op)
        self.take()
        if not _NUMBER.match(tok.text):
            return frozenset({tok.text})
        # An unquoted number also matches its canonical text: 3.0 matches 3, +7 matches 7.
        digits = tok.text.lstrip("+-").isdigit()
        canonical = str(int(tok.text)) if digits else repr(float(tok.text))
        if not digits and float(tok.text).is_integer():
            canonical = str(int(float(tok.text)))
        return frozenset({tok.text, canonical})

    def source(self, start: int) -> str:
        last = self.last()
        return self.text[start : last.pos + len(last.text)]


def _scope(scope: str, tok: _Token) -> bool:
    if scope in SCOPES:
        return True
    close = difflib.get_close_matches(scope, SCOPES, n=1)
    hint = f'did you mean "{close[0]}"?' if close else "use user. or group."
    raise ConditionError(f'unknown scope "{scope}" at position {tok.pos} ({hint})', tok.pos)


def _field(tok: _Token) -> Field:
    parts = tok.text.split(".")
    if len(parts) > 1:
        _scope(parts[0], tok)
        scope: str | None = parts[0]
        path = tuple(parts[1:])
    elif tok.text in SCOPES:
        msg = f'"{tok.text}" needs a field name, like {tok.text}.tier, at position {tok.pos}'
        raise ConditionError(msg, tok.pos)
    else:
        scope, path = None, (tok.text,)
    if not all(_IDENT.match(part) for part in path):
        raise ConditionError(f'invalid field name "{tok.text}" at position {tok.pos}', tok.pos)
    return Field(scope, path)


def parse_condition(text: str) -> Condition:
    """Parse a ruleset's ``when``; raises ``ConditionError`` pointing at the bad token."""
    if not text.strip():
        raise ConditionError("empty condition", 0)
    return Condition(text=text, root=_Parser(text).parse())
