"""A parser for the subset of GAQL (Google Ads Query Language) the adapter and the demo send.

    SELECT field, ... FROM resource
    [WHERE condition AND condition ...]
    [ORDER BY field [ASC|DESC], ...] [LIMIT n]

Conditions: ``field = | != | > | >= | < | <= value``, ``field IN (...)`` / ``NOT IN (...)``,
``field BETWEEN 'a' AND 'b'``, ``field DURING LAST_7_DAYS``, ``field IS [NOT] NULL``.
Values: 'strings', "strings", numbers, TRUE/FALSE and enum constants (ENABLED).
Anything else is refused with the QueryError the real API would give, so an adapter bug
shows up here instead of in production.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<number>-?\d+(?:\.\d+)?)
      | (?P<op><=|>=|!=|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)

KEYWORDS = frozenset(
    {"SELECT", "FROM", "WHERE", "AND", "ORDER", "BY", "ASC", "DESC", "LIMIT", "IN", "NOT",
     "BETWEEN", "DURING", "IS", "NULL", "LIKE", "PARAMETERS"}
)  # fmt: skip


class GaqlError(ValueError):
    """A query the emulator refuses; ``code`` is a QueryErrorEnum name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool
    is_enum: bool = False  # a bare word such as ENABLED or LAST_7_DAYS


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str  # =, !=, <, <=, >, >=, IN, NOT IN, BETWEEN, DURING, IS NULL, IS NOT NULL
    values: tuple[Literal, ...] = ()


@dataclass(frozen=True)
class Query:
    fields: tuple[str, ...]
    resource: str
    conditions: tuple[Condition, ...] = ()
    order_by: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    limit: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class _Tok:
    kind: str
    text: str


def _tokenize(query: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    position = 0
    query = query.strip()
    while position < len(query):
        match = _TOKEN.match(query, position)
        if not match or match.end() == position:
            raise GaqlError("BAD_SYMBOL", f"Unexpected character at position {position}: {query[position:][:20]!r}")
        position = match.end()
        kind = match.lastgroup or ""
        tokens.append(_Tok(kind, match.group(kind)))
    return tokens


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.tokens = tokens
        self.position = 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def peek_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token is not None and token.kind == "word" and token.text.upper() in words

    def take(self) -> _Tok:
        token = self.peek()
        if token is None:
            raise GaqlError("UNEXPECTED_END_OF_QUERY", "The query ended too early.")
        self.position += 1
        return token

    def expect_keyword(self, word: str, code: str) -> None:
        if not self.peek_keyword(word):
            raise GaqlError(code, f"Expected {word}.")
        self.position += 1

    def expect_punct(self, char: str) -> None:
        token = self.take()
        if token.text != char:
            raise GaqlError("BAD_SYMBOL", f"Expected {char!r}, got {token.text!r}.")

    def field_name(self) -> str:
        token = self.take()
        if token.kind != "word" or token.text.upper() in KEYWORDS:
            raise GaqlError("BAD_FIELD_NAME", f"Expected a field name, got {token.text!r}.")
        return token.text

    def literal(self) -> Literal:
        token = self.take()
        if token.kind == "string":
            return Literal(bytes(token.text[1:-1], "utf-8").decode("unicode_escape"))
        if token.kind == "number":
            return Literal(float(token.text) if "." in token.text else int(token.text))
        if token.kind == "word" and token.text.upper() in ("TRUE", "FALSE"):
            return Literal(token.text.upper() == "TRUE")
        if token.kind == "word" and token.text.upper() not in KEYWORDS:
            return Literal(token.text, is_enum=True)
        raise GaqlError("BAD_VALUE", f"Expected a value, got {token.text!r}.")

    def literal_list(self) -> tuple[Literal, ...]:
        self.expect_punct("(")
        values = [self.literal()]
        while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
            self.take()
            values.append(self.literal())
        self.expect_punct(")")
        return tuple(values)

    def condition(self) -> Condition:
        name = self.field_name()
        token = self.take()
        if token.kind == "op":
            return Condition(name, token.text, (self.literal(),))
        word = token.text.upper() if token.kind == "word" else ""
        if word == "IN":
            return Condition(name, "IN", self.literal_list())
        if word == "NOT":
            self.expect_keyword("IN", "BAD_OPERATOR")
            return Condition(name, "NOT IN", self.literal_list())
        if word == "BETWEEN":
            low = self.literal()
            self.expect_keyword("AND", "EXPECTED_AND")
            return Condition(name, "BETWEEN", (low, self.literal()))
        if word == "DURING":
            return Condition(name, "DURING", (self.literal(),))
        if word == "IS":
            negated = self.peek_keyword("NOT")
            if negated:
                self.take()
            self.expect_keyword("NULL", "BAD_OPERATOR")
            return Condition(name, "IS NOT NULL" if negated else "IS NULL")
        raise GaqlError("BAD_OPERATOR", f"Operator {token.text!r} is not supported by the sandbox.")

    def query(self) -> Query:
        self.expect_keyword("SELECT", "EXPECTED_SELECT")
        fields = [self.field_name()]
        while self.peek() is not None and self.peek().text == ",":  # type: ignore[union-attr]
            self.take()
            fields.append(self.field_name())
        self.expect_keyword("FROM", "EXPECTED_FROM")
        resource = self.field_name()
        conditions: list[Condition] = []
        if self.peek_keyword("WHERE"):
            self.take()
            conditions.append(self.condition())
            while self.peek_keyword("AND"):
                self.take()
                conditions.append(self.condition())
        order_by: list[tuple[str, bool]] = []
        if self.peek_keyword("ORDER"):
            self.take()
            self.expect_keyword("BY", "EXPECTED_BY")
            while True:
                name = self.field_name()
                descending = False
                if self.peek_keyword("ASC", "DESC"):
                    descending = self.take().text.upper() == "DESC"
                order_by.append((name, descending))
                if self.peek() is None or self.peek().text != ",":  # type: ignore[union-attr]
                    break
                self.take()
        limit = None
        if self.peek_keyword("LIMIT"):
            self.take()
            token = self.take()
            if token.kind != "number" or "." in token.text or int(token.text) <= 0:
                raise GaqlError("BAD_LIMIT_VALUE", f"Bad LIMIT {token.text!r}.")
            limit = int(token.text)
        if self.peek() is not None:
            raise GaqlError("UNEXPECTED_INPUT", f"Unexpected {self.peek().text!r} at the end of the query.")  # type: ignore[union-attr]
        return Query(tuple(fields), resource, tuple(conditions), tuple(order_by), limit)


def parse(query: str) -> Query:
    """Parse GAQL; raise GaqlError with the QueryErrorEnum name the API would use."""
    return _Parser(_tokenize(query)).query()
