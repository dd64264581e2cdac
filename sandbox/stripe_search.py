"""Stripe's search query language, for `GET /v1/customers/search`.

Supported: `email`, `name`, `phone`, `metadata['key']` with `:` (exact, case-insensitive) and
`~` (substring of at least 3 characters), `metadata['key']:null` (key absent), `created` with
`:`, `>`, `<`, `>=`, `<=`; `-` negates a clause; clauses joined by `AND` or by `OR`, not both,
at most 10, as Stripe allows.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sandbox.stripe_params import StripeError, invalid

MAX_CLAUSES = 10
STRING_FIELDS = ("email", "name", "phone")
_CLAUSE = re.compile(
    r"""(?P<negate>-)?
        (?P<field>[a-z_]+)(?:\[(?:'(?P<key1>[^']*)'|"(?P<key2>[^"]*)")\])?
        (?P<op>:|~|>=|<=|>|<)
        (?:'(?P<single>(?:[^'\\]|\\.)*)'|"(?P<double>(?:[^"\\]|\\.)*)"|(?P<bare>-?\d+|null))""",
    re.VERBOSE,
)
_JOIN = re.compile(r"\s+(AND|OR)\s+")


def _error(query: str, reason: str) -> StripeError:
    return invalid(f"Invalid query '{query}': {reason}", param="query")


def search_predicate(query: str) -> Callable[[dict], bool]:
    """A test for customer objects that matches `query`; a bad query is Stripe's 400."""
    clauses: list[Callable[[dict], bool]] = []
    joins: set[str] = set()
    position = 0
    text = query.strip()
    while True:
        match = _CLAUSE.match(text, position)
        if match is None:
            raise _error(query, f"cannot parse from character {position + 1}")
        clauses.append(_clause(query, match))
        position = match.end()
        if position == len(text):
            break
        join = _JOIN.match(text, position)
        if join is None:
            raise _error(query, f"expected AND or OR at character {position + 1}")
        joins.add(join.group(1))
        position = join.end()
    if len(joins) > 1:
        raise _error(query, "AND and OR cannot be used in the same query")
    if len(clauses) > MAX_CLAUSES:
        raise _error(query, f"at most {MAX_CLAUSES} clauses are allowed")
    combine = any if joins == {"OR"} else all
    return lambda customer: combine(clause(customer) for clause in clauses)


def _clause(query: str, match: re.Match) -> Callable[[dict], bool]:
    field, op = match["field"], match["op"]
    key = match["key1"] if match["key1"] is not None else match["key2"]
    quoted = match["single"] if match["single"] is not None else match["double"]
    value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else match["bare"]
    if (key is not None) != (field == "metadata"):
        raise _error(query, "metadata takes a key, as metadata['key'], and only it does")
    if field == "created":
        if quoted is not None or value == "null":
            raise _error(query, "created compares with a number of seconds")
        test = _number_test(op, int(value))
    elif field in STRING_FIELDS or field == "metadata":
        if op not in (":", "~"):
            raise _error(query, f"{field} supports only : and ~")
        if value == "null" and quoted is None:
            if field != "metadata" or op != ":":
                raise _error(query, "only metadata['key']:null tests for a missing value")
            test = _missing(key)
        else:
            test = _string_test(query, field, key, op, value)
    else:
        raise _error(
            query, f"field `{field}` is an unsupported search field for resource `customers`"
        )
    if match["negate"]:
        return lambda customer: not test(customer)
    return test


def _number_test(op: str, limit: int) -> Callable[[dict], bool]:
    compare = {
        ":": int.__eq__,
        ">": int.__gt__,
        "<": int.__lt__,
        ">=": int.__ge__,
        "<=": int.__le__,
    }[op]
    return lambda customer: compare(customer["created"], limit)


def _missing(key: str) -> Callable[[dict], bool]:
    return lambda customer: key not in customer["metadata"]


def _string_test(
    query: str, field: str, key: str | None, op: str, value: str
) -> Callable[[dict], bool]:
    wanted = value.lower()
    if op == "~" and len(wanted) < 3:
        raise _error(query, "a substring match (~) needs at least 3 characters")

    def test(customer: dict) -> bool:
        found = customer["metadata"].get(key) if field == "metadata" else customer[field]
        if not isinstance(found, str):
            return False
        return wanted in found.lower() if op == "~" else found.lower() == wanted

    return test
