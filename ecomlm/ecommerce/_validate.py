"""Argument checks shared by ecomlm.ecommerce: each raises BadRequestError naming the field."""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

from ..errors import BadRequestError


def dataframe(obj, param: str, columns: Sequence[str] = (), *, allow_empty: bool = False):
    """`obj` as a pandas DataFrame (a list of dicts is accepted) holding `columns`."""
    import pandas as pd

    if isinstance(obj, list) and all(isinstance(r, dict) for r in obj):
        obj = pd.DataFrame(obj)
    if not isinstance(obj, pd.DataFrame):
        raise BadRequestError(f"{param} must be a pandas DataFrame (or a list of dicts), got {type(obj).__name__}",
                              param=param)
    missing = [c for c in columns if c not in obj.columns]
    if missing:
        raise BadRequestError(f"{param} is missing column(s) {', '.join(map(repr, missing))}; it has "
                              f"{', '.join(map(repr, map(str, obj.columns))) or 'no columns'}", param=f"{param}.{missing[0]}")
    if not allow_empty and len(obj) == 0:
        raise BadRequestError(f"{param} is empty", param=param)
    for c in columns:
        if obj[c].isna().any():
            bad = int(obj[c].isna().sum())
            raise BadRequestError(f"{param}.{c} has {bad} missing value(s)", param=f"{param}.{c}")
    return obj


def text(obj, param: str, *, allow_empty: bool = False) -> str:
    if not isinstance(obj, str):
        raise BadRequestError(f"{param} must be a string, got {type(obj).__name__}", param=param)
    if not allow_empty and not obj.strip():
        raise BadRequestError(f"{param} must not be empty", param=param)
    return obj


def texts(obj, param: str) -> list[str]:
    """A non-empty list of non-empty strings (a single string is wrapped)."""
    if isinstance(obj, str):
        obj = [obj]
    try:
        import pandas as pd

        if isinstance(obj, pd.Series):
            obj = obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if not isinstance(obj, (list, tuple)):
        raise BadRequestError(f"{param} must be a string or a list of strings, got {type(obj).__name__}", param=param)
    if not obj:
        raise BadRequestError(f"{param} must not be empty", param=param)
    for i, t in enumerate(obj):
        if not isinstance(t, str):
            raise BadRequestError(f"{param}[{i}] must be a string, got {type(t).__name__}", param=param)
    return list(obj)


def positive_int(obj, param: str) -> int:
    if isinstance(obj, bool) or not isinstance(obj, int) or obj < 1:
        raise BadRequestError(f"{param} must be a positive integer, got {obj!r}", param=param)
    return obj


def integer(obj, param: str, minimum: int = 0) -> int:
    if isinstance(obj, bool) or not isinstance(obj, int) or obj < minimum:
        raise BadRequestError(f"{param} must be an integer >= {minimum}, got {obj!r}", param=param)
    return obj


def number(obj, param: str) -> float:
    if isinstance(obj, bool) or not isinstance(obj, (int, float)):
        raise BadRequestError(f"{param} must be a number, got {type(obj).__name__}", param=param)
    return float(obj)


def weight(obj, param: str, maximum: Optional[float] = None) -> float:
    """A number >= 0 (and <= maximum when given); booleans are refused."""
    if (isinstance(obj, bool) or not isinstance(obj, (int, float))
            or (obj < 0 if maximum is None else not 0 <= obj <= maximum)):
        rng = ">= 0" if maximum is None else f"in [0, {maximum:g}]"
        raise BadRequestError(f"{param} must be a number {rng}", param=param)
    return float(obj)


def identity(obj, param: str):
    """A customer or user id: a string or an integer (None allowed)."""
    if obj is not None and (isinstance(obj, bool) or not isinstance(obj, (str, int))):
        raise BadRequestError(f"{param} must be a string or an integer, got {type(obj).__name__}", param=param)
    return obj


def one_of(obj, param: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    if obj not in choices:
        raise BadRequestError(f"{param} must be one of {', '.join(map(repr, choices))}, got {obj!r}", param=param)
    return obj
