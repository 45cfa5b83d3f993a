"""Argument checks shared by the classes a config builds: each failure is a ValueError of one line
that names the setting, what it got and what it takes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}={value!r} must be a positive integer")
    return value


def one_of(name: str, value: Any, choices: Iterable[str]) -> str:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name}={value!r} is unknown: choose {' | '.join(choices)}")
    return value


def fraction(name: str, value: Any) -> float:
    """A number in [0, 1), such as a dropout probability."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name}={value!r} must be a number in [0, 1)")
    return float(value)
