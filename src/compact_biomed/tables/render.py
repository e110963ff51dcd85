"""Tables as frames of text cells, rendered by pandas: Markdown (`to_markdown`, tabulate), and HTML and LaTeX
through a `Styler` that marks each column's best value in bold (the report shows the HTML page in a frame)."""

from __future__ import annotations

import html
import re
from typing import NamedTuple

import pandas as pd
from pandas.io.formats.style import Styler


class Table(NamedTuple):
    """One renderer-agnostic table: Markdown, HTML and LaTeX show its cells as they are (HTML and LaTeX escaped)."""

    title: str
    frame: pd.DataFrame  # the cells as text, its columns the header
    note: str
    best: pd.DataFrame | None = None  # True where a cell holds its column's best value; columns: those it marks


def markdown_page(title: str, tables: list[Table], banner: str | None = None) -> str:
    head = f"# {title}\n\n" + (f"**{banner}**\n\n" if banner else "")
    cells = lambda t: t.frame.to_markdown(index=False, disable_numparse=True)  # as written, never reformatted
    return head + "\n".join(f"## {t.title}\n\n{cells(t)}\n\n{t.note}\n" for t in tables)


def styled(table: Table, escape: str) -> Styler:
    """The cells without the row index, the header escaped for `escape` ("html", "latex"), the best values bold."""
    style = Styler(table.frame, cell_ids=False).hide(axis="index").format_index(escape=escape, axis=1)
    bold = lambda cells: table.best.map(lambda best: "font-weight: bold" if best else "")
    return style if table.best is None else style.apply(bold, axis=None, subset=list(table.best.columns))


# Plain HTML for the Snakemake report, which shows .html results in a frame (Markdown and CSV only as downloads).
HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
p.note { color: #555; max-width: 60em; }
p.banner { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em; max-width: 60em; font-weight: bold; }
"""


def html_inline(text: str) -> str:
    """Escape text for HTML; `code` spans (the Markdown notes use them) become <code> elements."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def html_table(table: Table, uuid: str) -> str:
    """`uuid`, unique within the page, names the table's cells in the CSS that marks the best ones."""
    cells = styled(table, "html").format(escape="html").to_html(table_uuid=uuid)
    return f'<h2>{html.escape(table.title)}</h2>\n{cells}<p class="note">{html_inline(table.note)}</p>\n'


def html_page(title: str, tables: list[Table], banner: str | None = None) -> str:
    """A standalone page (no external resources: the report embeds it as a data URI)."""
    return (
        f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        f"<style>{HTML_STYLE}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
        + (f'<p class="banner">{html.escape(banner)}</p>\n' if banner else "")
        + "".join(html_table(t, f"t{i}") for i, t in enumerate(tables))
        + "</body>\n</html>\n"
    )
