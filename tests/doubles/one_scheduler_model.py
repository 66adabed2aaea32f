"""TEST DOUBLE: how OpenNebula's scheduler (mm_sched, and the `rank` policy of 7.0) picks a
host for a VM, reduced to the rules that decide it, so that tests can prove what a
SCHED_RANK / SCHED_REQUIREMENTS expression does with the attributes the energy sync writes.

The rules, as oned's expression parsers state them (src/parsers/expr_parser.l,
expr_bool.y, expr_arith.y) and as measured with OpenNebula 6.10.5's scheduler:

  - tokens: one of `@ ! & | = > < ( ) * + / ^ -`; a name `[A-Za-z][0-9A-Za-z_]*` or a
    quoted string; an integer `-?[0-9]+`; a float `-?[0-9]+.[0-9]+`; blanks between; the
    longest match wins (so `5-3` is `5` then `-3`, which no rule accepts);
  - a requirement is true when empty; `NAME op INTEGER` reads the attribute as an integer
    (the digits it starts with: "151.3" is 151), `NAME op FLOAT` as a float, `NAME = STRING`
    matches a shell pattern; ops `=`, `!=`, `>`, `<`; any comparison with an attribute the
    host does not have (or that is not a number where one is wanted) is false, `!=` too;
    `!`, `&` and `|` have one precedence and group from the left (`!A & B` is `(!A) & B`,
    `A | B & C` is `(A | B) & C`);
  - a rank is arithmetic in single-precision floats (`+ -` below `* /`, both from the left,
    unary minus over what follows up to the next `+` or `-`); an attribute the host does
    not have counts as 0; the result is cast to an integer (towards zero), so 60.2 and
    60.9 rank the same; an empty rank is 0;
  - among the hosts that have room and meet the requirements, the highest rank wins; with
    none the VM stays pending. Of tied hosts the model gives every one: mm_sched 6.10.5 took
    the one with the highest ID, but it sorts with std::sort, which promises no order.

A host is a dict of its template attributes (name -> text), as the API simulator holds them.
(oned looks a name up in the host's TEMPLATE first, then in HOST_SHARE, its last monitoring,
the HOST element and its cluster's TEMPLATE; the energy sync's attributes are in TEMPLATE.)
tests/real_opennebula/check_against_oned.py compares the model with a real mm_sched.
"""

from __future__ import annotations

import fnmatch
import re
import struct

_TOKEN_PATTERNS = (
    ("OP", re.compile(r"[@!&|=><()*+/^-]")),
    ("STRING", re.compile(r"[A-Za-z][0-9A-Za-z_]*")),
    ("STRING", re.compile(r'""')),
    ("STRING", re.compile(r'"[^"]*"')),
    ("INTEGER", re.compile(r"-?[0-9]+")),
    ("FLOAT", re.compile(r"-?[0-9]+\.[0-9]+")),
)
_BLANKS = re.compile(r"[ \t]*")
_LEADING_INTEGER = re.compile(r"\s*[+-]?[0-9]+")
_LEADING_FLOAT = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class ExpressionError(ValueError):
    """oned would refuse the expression (a syntax error)."""


def _float32(value: float) -> float:
    """value as a C float holds it."""
    return struct.unpack("f", struct.pack("f", value))[0]


def tokens(expression: str) -> list[tuple[str, str]]:
    """The expression's tokens as oned's scanner cuts them: the longest match, then the
    first pattern listed."""
    found, position = [], 0
    while True:
        position = _BLANKS.match(expression, position).end()
        if position >= len(expression):
            return found
        best = None
        for kind, pattern in _TOKEN_PATTERNS:
            match = pattern.match(expression, position)
            if match and (best is None or match.end() > best[1].end()):
                best = (kind, match)
        if best is None:
            raise ExpressionError(f"cannot read {expression[position:]!r}")
        kind, match = best
        text = match.group(0)
        if kind == "STRING" and text.startswith('"'):
            text = text[1:-1]
        found.append((kind, text))
        position = match.end()


def _as_integer(text: str | None) -> int | None:
    """What `istringstream >> int` reads: the leading integer, or None."""
    match = _LEADING_INTEGER.match(text or "")
    return int(match.group(0)) if match else None


def _as_float(text: str | None) -> float | None:
    """What `istringstream >> float` reads: the leading number, or None."""
    match = _LEADING_FLOAT.match(text or "")
    return _float32(float(match.group(0))) if match else None


class _Parser:
    def __init__(self, expression: str, host: dict[str, str]):
        self.tokens = tokens(expression)
        self.position = 0
        self.host = host

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        index = self.position + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise ExpressionError("unexpected end of expression")
        self.position += 1
        return token

    def expect_op(self, op: str) -> None:
        if self.take() != ("OP", op):
            raise ExpressionError(f"expected {op!r}")

    def done(self) -> None:
        if self.peek() is not None:
            raise ExpressionError(f"unexpected {self.peek()[1]!r}")

    # -- requirements (expr_bool.y)

    def requirement(self) -> bool:
        value = self._condition()
        while self.peek() in (("OP", "&"), ("OP", "|")):
            _, op = self.take()
            right = self._condition()
            value = (value and right) if op == "&" else (value or right)
        return value

    def _condition(self) -> bool:
        token = self.take()
        if token == ("OP", "!"):
            return not self._condition()
        if token == ("OP", "("):
            value = self.requirement()
            self.expect_op(")")
            return value
        if token[0] != "STRING":
            raise ExpressionError(f"unexpected {token[1]!r}")
        return self._comparison(token[1])

    def _comparison(self, name: str) -> bool:
        _, op = self.take()
        if op == "!":
            self.expect_op("=")
            op = "!="
        elif op == "@":
            raise ExpressionError(
                "the model does not evaluate @> (not used by the energy sync's advice)"
            )
        elif op not in ("=", ">", "<"):
            raise ExpressionError(f"unexpected {op!r}")
        kind, literal = self.take()
        stored = self.host.get(name)
        if kind in ("INTEGER", "FLOAT"):
            value = _as_integer(stored) if kind == "INTEGER" else _as_float(stored)
            bound = int(literal) if kind == "INTEGER" else _float32(float(literal))
            if value is None:
                return False
            return {
                "=": value == bound,
                "!=": value != bound,
                ">": value > bound,
                "<": value < bound,
            }[op]
        if op not in ("=", "!="):
            raise ExpressionError(f"{op} needs a number")
        if stored is None or literal == "":
            return False
        matched = fnmatch.fnmatchcase(stored, literal)
        return matched if op == "=" else not matched

    # -- ranks (expr_arith.y)

    def rank(self, minimum_level: int = 1) -> float:
        value = self._operand()
        while True:
            token = self.peek()
            level = (
                {"+": 1, "-": 1, "*": 2, "/": 2}.get(token[1])
                if token and token[0] == "OP"
                else None
            )
            if level is None or level < minimum_level:
                return value
            self.take()
            right = self.rank(level + 1)
            op = token[1]
            value = _float32(
                {"+": value + right, "-": value - right, "*": value * right}.get(op)
                if op != "/"
                else value / right
            )

    def _operand(self) -> float:
        kind, text = self.take()
        if (kind, text) == ("OP", "-"):
            return _float32(-self.rank(2))
        if (kind, text) == ("OP", "("):
            value = self.rank()
            self.expect_op(")")
            return value
        if kind == "STRING":
            value = _as_float(self.host.get(text))
            return 0.0 if value is None else value
        if kind in ("INTEGER", "FLOAT"):
            return _float32(float(text))
        raise ExpressionError(f"unexpected {text!r}")


def requirement_holds(expression: str, host: dict[str, str]) -> bool:
    """Whether host meets SCHED_REQUIREMENTS = expression (an empty one always holds)."""
    parser = _Parser(expression, host)
    if parser.peek() is None:
        return True
    value = parser.requirement()
    parser.done()
    return value


def rank_of(expression: str, host: dict[str, str]) -> int:
    """The integer SCHED_RANK = expression gives host (0 for an empty one)."""
    parser = _Parser(expression, host)
    if parser.peek() is None:
        return 0
    value = parser.rank()
    parser.done()
    return int(value)


def best_hosts(
    hosts: dict[str, dict[str, str]],
    *,
    rank: str = "",
    requirements: str = "",
    with_room: set[str] | None = None,
) -> set[str]:
    """The hosts the scheduler may put the VM on: those with room that meet the requirements,
    of the highest rank (more than one when they tie). Empty: the VM stays pending."""
    eligible = {
        name: host
        for name, host in hosts.items()
        if (with_room is None or name in with_room) and requirement_holds(requirements, host)
    }
    if not eligible:
        return set()
    ranks = {name: rank_of(rank, host) for name, host in eligible.items()}
    top = max(ranks.values())
    return {name for name, value in ranks.items() if value == top}
