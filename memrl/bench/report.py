"""Benchmark output: the JSON a tool reads and the Markdown table a person reads."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub Markdown table of ``rows``; floats get 4 significant digits."""
    if not rows:
        return "(no rows)\n"
    columns = list(columns or rows[0].keys())

    def fmt(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(
    out: str | Path,
    payload: Any,
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str] | None = None,
    notes: str = "",
) -> tuple[Path, Path]:
    """Write ``payload`` as JSON to ``out`` and the table of ``rows`` to ``out`` with ``.md``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown_table(rows, columns) + (f"\n{notes}\n" if notes else ""))
    log.info("wrote %s and %s", out, md)
    return out, md
