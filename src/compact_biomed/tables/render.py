"""Tables as cells, rendered the same way to Markdown and HTML (the report shows the HTML in a frame)."""

from __future__ import annotations

import html
import re
from typing import NamedTuple


class Table(NamedTuple):
    """One rendered-agnostic table: the Markdown and HTML outputs show exactly the same cells."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str


def markdown_row(cells: list[str]) -> str:
    return f"| {' | '.join(cells)} |\n"


def markdown_table(table: Table) -> str:
    lines = markdown_row(table.header) + markdown_row(["---"] * len(table.header))
    lines += "".join(markdown_row(row) for row in table.rows)
    return f"## {table.title}\n\n{lines}\n{table.note}\n"


def markdown_page(title: str, tables: list[Table], banner: str | None = None) -> str:
    head = f"# {title}\n\n" + (f"**{banner}**\n\n" if banner else "")
    return head + "\n".join(markdown_table(t) for t in tables)


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


def html_table(table: Table) -> str:
    cells = lambda row, tag: "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in row)
    body = "".join(f"<tr>{cells(row, 'td')}</tr>\n" for row in table.rows)
    return (f"<h2>{html.escape(table.title)}</h2>\n<table>\n<thead><tr>{cells(table.header, 'th')}</tr></thead>\n"
            f"<tbody>\n{body}</tbody>\n</table>\n<p class=\"note\">{html_inline(table.note)}</p>\n")


def html_page(title: str, tables: list[Table], banner: str | None = None) -> str:
    """A standalone page (no external resources: the report embeds it as a data URI)."""
    return (f"<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n"
            f"<style>{HTML_STYLE}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            + (f"<p class=\"banner\">{html.escape(banner)}</p>\n" if banner else "")
            + "".join(html_table(t) for t in tables) + "</body>\n</html>\n")


