"""The one error type of the config layer, and the close-match hint every message uses."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class ConfigError(ValueError):
    """A config that cannot be used; the message names every offending dotted key."""


def colon_key_hint(key: Any) -> str | None:
    """The fix for a key that is really ``key: value`` written without the space.

    YAML reads ``{memory_len:64}`` as the one key ``"memory_len:64"`` (a colon followed by a
    non-space is part of a plain scalar), so the real key looks unknown. Returns e.g.
    ``"write `memory_len: 64` (a space after the colon): YAML read `memory_len:64` as one key"``,
    or None when ``key`` does not look like that.
    """
    if not isinstance(key, str) or ":" not in key:
        return None
    name, _, value = key.partition(":")
    if not name.strip() or not value.strip() or value.startswith(" "):
        return None
    return (
        f"write `{name.strip()}: {value.strip()}` (a space after the colon): "
        f"YAML read `{key}` as one key"
    )


def suggest(word: Any, valid: Iterable[str]) -> str:
    """``"did you mean 'x'? valid: a, b, x"`` (the hint only when something is close), or the
    colon-key fix of :func:`colon_key_hint`."""
    hint = colon_key_hint(word)
    if hint is not None:
        return hint
    word = str(word)  # keys of YAML mappings may be ints, None, ...
    valid = list(valid)
    close = difflib.get_close_matches(word, valid, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    return f"{hint}valid: {', '.join(valid) if valid else '(none)'}"
