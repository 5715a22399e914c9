"""Plain-text tables: the one printer behind every table pgflow writes to a terminal or a text file."""

from __future__ import annotations


def table(header, rows, *, align=None, rule: bool = False) -> str:
    """Columns of text, each as wide as its widest cell, separated by two spaces.

    Parameters
    ----------
    header : sequence of str
    rows : sequence of sequences of str
    align : str, optional
        One character per column, "<" (left, the default) or ">" (right).
    rule : bool
        Put a line of dashes under the header.

    Returns
    -------
    str
        The lines, without trailing spaces or a final newline.

    Examples
    --------
    >>> print(table(("name", "value"), [("a", "1"), ("bb", "22")], align="<>"))
    name  value
    a         1
    bb       22
    """
    header = [str(h) for h in header]
    rows = [[str(c) for c in row] for row in rows]
    for i, row in enumerate(rows):
        if len(row) != len(header):
            raise ValueError(f"row {i} has {len(row)} cells, the header {len(header)}")
    align = align or "<" * len(header)
    if len(align) != len(header) or set(align) - {"<", ">"}:
        raise ValueError(f"align must give '<' or '>' for each of the {len(header)} columns, got {align!r}")
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]

    def line(cells):
        return "  ".join(c.ljust(w) if a == "<" else c.rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    lines = [line(header)] + (["  ".join("-" * w for w in widths)] if rule else []) + [line(r) for r in rows]
    return "\n".join(lines)
