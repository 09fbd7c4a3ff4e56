"""The one error type of the config layer, and the close-match hint every message uses."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A config that cannot be used; the message names every offending dotted key."""


def suggest(word: str, valid: Iterable[str]) -> str:
    """``"did you mean 'x'? valid: a, b, x"`` (the hint only when something is close)."""
    valid = list(valid)
    close = difflib.get_close_matches(word, valid, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{hint}valid: {', '.join(valid) if valid else '(none)'}"
