"""How commands print: JSON and JSON Lines for programs, tables for people, progress on stderr."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO


def print_json(obj: Any, *, stream: TextIO | None = None) -> None:
    """One JSON object on one line (JSON Lines friendly), keys in insertion order."""
    out = stream or sys.stdout
    out.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None) -> None:
    """A readable table on stdout (rich when stdout is a terminal, plain columns otherwise)."""
    rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    if title:
        print(title)
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


class Progress:
    """A progress bar on stderr; ``advance()`` as work is done, ``note()`` for a line."""

    def __init__(self, bar: Any | None, task: Any | None) -> None:
        self._bar = bar
        self._task = task

    def advance(self, steps: int = 1, description: str | None = None) -> None:
        if self._bar is not None:
            kwargs = {"description": description} if description else {}
            self._bar.update(self._task, advance=steps, **kwargs)

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, file=sys.stderr)


@contextmanager
def progress(description: str, total: int | None, *, enabled: bool | None = None) -> Iterator[Progress]:
    """A progress bar on stderr while the block runs; silent when stderr is not a terminal."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield Progress(None, None)
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress as RichProgress, TextColumn, TimeElapsedColumn

    bar = RichProgress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    bar.start()
    try:
        task = bar.add_task(description, total=total)
        yield Progress(bar, task)
    finally:
        bar.stop()
