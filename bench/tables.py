"""The one way the suite writes a table: :func:`markdown_table`, for reports, ``check`` and ``status``.

Three styles:

* ``aligned``: a markdown (pipe) table with its columns padded to line up, written by
  :mod:`tabulate`; the report's tables of cells and tests;
* ``compact``: a markdown table without padding, ``| a | b |`` under ``|---|---|``, so that a
  row's text never depends on the other rows (a row can be found and compared as it is written);
* ``plain``: a terminal table (tabulate's ``simple``) whose number columns are right-aligned.

Markdown cells are kept as the caller wrote them (the reports format their own numbers, so
"0.50" never becomes "0.5").
"""

from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
from tabulate import tabulate

__all__ = ["STYLES", "markdown_table"]

STYLES = ("aligned", "compact", "plain")


def _compact(rows: list[list[Any]], headers: list[str]) -> str:
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def markdown_table(data: pd.DataFrame | Sequence[Sequence[Any]], headers: Sequence[str] | None = None, *,
                   style: str = "aligned") -> str:
    """``data`` as a table in ``style`` (:data:`STYLES`): a DataFrame (its columns are the headers,
    its index is not shown) or rows with ``headers``."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {', '.join(STYLES)}, got {style!r}")
    table: Any
    if isinstance(data, pd.DataFrame):
        table, names = data, ([str(c) for c in data.columns] if headers is None else list(headers))
    else:
        table, names = [list(row) for row in data], list(headers or ())
    if style == "compact":
        return _compact(table.values.tolist() if isinstance(table, pd.DataFrame) else table, names)
    if style == "plain":
        return tabulate(table, headers=names, tablefmt="simple", showindex=False)
    return tabulate(table, headers=names, tablefmt="pipe", showindex=False, disable_numparse=True)
