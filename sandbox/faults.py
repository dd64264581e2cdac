"""Misbehaviour on demand: latency, 5xx errors, 429s, connection resets, timeouts and
"commit then fail", per route, from seeded randomness so a run repeats. An "error" can also be
a refusal (a 4xx from ``REFUSAL_STATUSES``), which each simulator words as its vendor does: the
answers a retry cannot cure.

Rules are matched against `METHOD /route/{template}` (the same keys the request counters use);
`*` matches anything, so `"*"` is every route and `"POST *"` every POST. The first rule that
matches a request decides what happens to it.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# Which fault a request gets is one draw against these rates, in this order.
KINDS = ("rate_limit", "error", "reset", "timeout")
# 4xx answers an "error" fault may give besides 5xx: refusals of the request itself (400, 402,
# 404), missing permission (401, 403) and conflicts (409).
REFUSAL_STATUSES = frozenset({400, 401, 402, 403, 404, 409})


def _number(body: Mapping[str, Any], name: str, default: float, *, low: float = 0) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise ValueError(f"{name} must be a number >= {low}, not {value!r}")
    return float(value)


def _rate(body: Mapping[str, Any], name: str) -> float:
    rate = _number(body, name, 0)
    if rate > 1:
        raise ValueError(f"{name} must be between 0 and 1, not {rate}")
    return rate


@dataclass(frozen=True)
class FaultRule:
    """One rule of `POST /_sandbox/faults`; the field names are the JSON keys."""

    route: str = "*"
    error_rate: float = 0
    statuses: tuple[int, ...] = (500, 502, 503)
    rate_limit_rate: float = 0
    retry_after: int = 1
    reset_rate: float = 0
    timeout_rate: float = 0
    timeout_seconds: float = 5
    latency_ms: tuple[float, float] | None = None
    after_commit: bool = False
    times: int | None = None
    pattern: re.Pattern = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = ".*".join(re.escape(part) for part in self.route.split("*"))
        object.__setattr__(self, "pattern", re.compile(regex))

    @classmethod
    def from_json(cls, body: Any) -> FaultRule:
        if not isinstance(body, dict):
            raise ValueError(f"a rule must be a JSON object, not {body!r}")
        unknown = sorted(set(body) - {f.name for f in fields(cls) if f.init})
        if unknown:
            raise ValueError(f"unknown rule field(s): {', '.join(unknown)}")
        route = body.get("route", "*")
        if not isinstance(route, str) or not route:
            raise ValueError("route must be 'METHOD /template', with * as a wildcard")
        rates = {name: _rate(body, name) for name in (f"{kind}_rate" for kind in KINDS)}
        if sum(rates.values()) > 1:
            raise ValueError(
                "error_rate, rate_limit_rate, reset_rate and timeout_rate add up to > 1"
            )
        statuses = body.get("statuses", list(cls.statuses))
        if (
            not isinstance(statuses, list)
            or not statuses
            or not all(
                isinstance(s, int) and (500 <= s <= 599 or s in REFUSAL_STATUSES) for s in statuses
            )
        ):
            raise ValueError(
                f"statuses must be a non-empty list of 5xx codes or of "
                f"{sorted(REFUSAL_STATUSES)}, not {statuses!r}"
            )
        retry_after = body.get("retry_after", cls.retry_after)
        # Retry-After carries whole seconds; clients (urllib3) ignore anything else.
        if isinstance(retry_after, bool) or not isinstance(retry_after, int) or retry_after < 0:
            raise ValueError(f"retry_after must be whole seconds >= 0, not {retry_after!r}")
        latency = body.get("latency_ms")
        if latency is not None:
            if isinstance(latency, int | float) and not isinstance(latency, bool):
                latency = [latency, latency]
            if (
                not isinstance(latency, list)
                or len(latency) != 2
                or not all(isinstance(v, int | float) and v >= 0 for v in latency)
                or latency[0] > latency[1]
            ):
                raise ValueError(f"latency_ms must be a number or [low, high], not {latency!r}")
            latency = (float(latency[0]), float(latency[1]))
        after_commit = body.get("after_commit", False)
        if not isinstance(after_commit, bool):
            raise ValueError("after_commit must be true or false")
        times = body.get("times")
        if times is not None and (
            isinstance(times, bool) or not isinstance(times, int) or times < 1
        ):
            raise ValueError(f"times must be a positive integer or null, not {times!r}")
        return cls(
            route=route,
            error_rate=rates["error_rate"],
            statuses=tuple(statuses),
            rate_limit_rate=rates["rate_limit_rate"],
            retry_after=retry_after,
            reset_rate=rates["reset_rate"],
            timeout_rate=rates["timeout_rate"],
            timeout_seconds=_number(body, "timeout_seconds", cls.timeout_seconds),
            latency_ms=latency,
            after_commit=after_commit,
            times=times,
        )

    def to_json(self, remaining: int | None) -> dict:
        return {
            "route": self.route,
            "error_rate": self.error_rate,
            "statuses": list(self.statuses),
            "rate_limit_rate": self.rate_limit_rate,
            "retry_after": self.retry_after,
            "reset_rate": self.reset_rate,
            "timeout_rate": self.timeout_rate,
            "timeout_seconds": self.timeout_seconds,
            "latency_ms": list(self.latency_ms) if self.latency_ms else None,
            "after_commit": self.after_commit,
            "times": remaining,
        }


@dataclass(frozen=True)
class FaultPlan:
    """What happens to one request: a delay first, then at most one fault."""

    delay_seconds: float = 0
    kind: str | None = None  # one of KINDS
    status: int = 500
    retry_after: int = 1
    timeout_seconds: float = 0
    after_commit: bool = False

    @property
    def label(self) -> str | None:
        """The name the request counters file this fault under."""
        if self.kind in ("error", "reset") and self.after_commit:
            return f"{self.kind}_after_commit"
        return self.kind


class FaultInjector:
    """The rules of one simulator and the seeded draws that apply them. Thread-safe."""

    def __init__(self, seed: int | None = None) -> None:
        self.default_seed = seed
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._rules: list[list] = []  # [rule, remaining times or None]
            self._seed = self.default_seed
            self._rng = random.Random(self._seed)

    def configure(self, body: Any) -> dict:
        """Replace the rules: a JSON list of rules, or `{"seed": n, "rules": [...]}`.

        The draws restart from the seed (the body's, else the app's) each time, so the same
        rules over the same requests misbehave the same way.
        """
        seed = self.default_seed
        if isinstance(body, dict):
            unknown = sorted(set(body) - {"seed", "rules"})
            if unknown:
                raise ValueError(f"unknown field(s): {', '.join(unknown)}")
            seed = body.get("seed", seed)
            if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
                raise ValueError(f"seed must be an integer, not {seed!r}")
            body = body.get("rules", [])
        if not isinstance(body, list):
            raise ValueError('give a JSON list of rules or {"seed": n, "rules": [...]}')
        rules = [FaultRule.from_json(item) for item in body]
        with self._lock:
            self._rules = [[rule, rule.times] for rule in rules]
            self._seed = seed
            self._rng = random.Random(seed)
        return self.describe()

    def describe(self) -> dict:
        with self._lock:
            return {
                "seed": self._seed,
                "rules": [rule.to_json(remaining) for rule, remaining in self._rules],
            }

    def plan(self, key: str) -> FaultPlan | None:
        """Decide the fate of one request to `key`; None when no rule matches."""
        with self._lock:
            for entry in self._rules:
                rule, remaining = entry
                if rule.pattern.fullmatch(key):
                    break
            else:
                return None
            if remaining is not None:
                if remaining <= 1:
                    self._rules.remove(entry)
                else:
                    entry[1] = remaining - 1
            delay = self._rng.uniform(*rule.latency_ms) / 1000 if rule.latency_ms else 0.0
            draw = self._rng.random()
            kind = None
            threshold = 0.0
            for name in KINDS:
                threshold += getattr(rule, f"{name}_rate")
                if draw < threshold:
                    kind = name
                    break
            status = self._rng.choice(rule.statuses) if kind == "error" else 500
            return FaultPlan(
                delay_seconds=delay,
                kind=kind,
                status=status,
                retry_after=rule.retry_after,
                timeout_seconds=rule.timeout_seconds,
                after_commit=rule.after_commit,
            )


async def reset_connection(send: Any) -> None:
    """Drop the client's TCP connection with a reset, having sent nothing.

    ASGI has no message for this. uvicorn's `send` is a bound method of its request cycle, which
    holds the connection's transport: closing that with SO_LINGER 0 sends an RST.
    """
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise RuntimeError("connection resets need the simulator served by uvicorn")
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()
    # Let uvicorn see the connection gone before the app returns, so it does not try to answer.
    await asyncio.sleep(0)
