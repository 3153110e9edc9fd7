"""Argument checks shared by the model constructors."""

from __future__ import annotations


def check_positive_int(name: str, value: object) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an ``int`` >= 1 (``bool`` refused).

    Example:
        >>> check_positive_int("width", 16)
        >>> check_positive_int("width", 0)
        Traceback (most recent call last):
        ...
        ValueError: width must be a positive integer, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
