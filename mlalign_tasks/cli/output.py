"""What the commands print: rich consoles for stdout and stderr, and tables printed without cutting a cell."""

from __future__ import annotations

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def print_table(table) -> None:
    """Print a rich table without cutting a cell: piped or redirected at its full width (rich would assume 80
    columns), in a terminal folded into its width."""
    from rich.measure import Measurement

    if console.is_terminal:
        for column in table.columns:
            column.overflow = "fold"
        console.print(table)
        return
    natural = Measurement.get(console, console.options.update_width(1_000_000), table).maximum
    width = console.width
    console.width = max(width, natural)
    try:
        console.print(table)
    finally:
        console.width = width
