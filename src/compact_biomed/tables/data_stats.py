"""The data table: the PubMed corpus build and the tokenisation shards in numbers (Markdown and HTML through
`render`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..io import read_json, write_text
from .render import Table, html_page, markdown_page


def corpus_tables(corpus: dict) -> list[Table]:
    """The corpus build in numbers, and the citations and deletions of each baseline file."""
    facts = [
        ("Baseline files", corpus["files"]),
        ("Citations parsed", corpus["citations_parsed"]),
        ("Deletions listed", corpus["deletions_listed"]),
        ("Citations deleted", corpus["deleted"]),
        ("Older versions replaced", corpus["duplicates_replaced"]),
        ("Records kept", corpus["records"]),
        ("… with an abstract", corpus["with_abstract"]),
        ("… title only", corpus["title_only"]),
        ("Empty text (kept, as in the paper)", corpus["empty_text"]),
        ("Characters", corpus["characters"]),
    ]
    summary = Table(
        "PubMed corpus",
        pd.DataFrame([[k, f"{v:,}"] for k, v in facts], columns=["Statistic", "Value"]),
        f"Text format `{corpus['text_format']}`; a record is the newest version of a citation not deleted "
        f"by a later file.",
    )
    per_file = [
        [f["file"], f"{f['citations']:,}", f"{f['deletions']:,}", f"{f.get('records_kept', 0):,}"]
        for f in corpus["per_file"]
    ]
    files = Table(
        "Parsed files",
        pd.DataFrame(per_file, columns=["File", "Citations", "Deletions", "Records kept"]),
        "Per file, in processing order; a record is kept from the file holding its winning version.",
    )
    return [summary, files]


def shard_table(manifests: dict[str, dict]) -> Table:
    """One row per tokenizer: its shards' rows, tokens and what truncation cut."""
    rows = []
    for owner, manifest in manifests.items():
        totals, first = manifest["totals"], manifest["shards"][0]
        rows.append(
            [
                owner,
                f"{totals['shards']}",
                f"{totals['rows']:,}",
                f"{totals['tokens']:,}",
                f"{totals['tokens'] / max(totals['rows'], 1):.1f}",
                f"{totals['truncated_tokens']:,}",
                f"{first['mode']} / {first['max_length']}",
            ]
        )
    header = ["Tokenizer", "Shards", "Rows", "Tokens", "Tokens per row", "Truncated tokens", "Mode / max length"]
    return Table(
        "Tokenisation shards",
        pd.DataFrame(rows, columns=header),
        "One set of shards per tokenizer in use: the teacher's (distillation students) and each "
        "continual model's own; truncated tokens are those cut beyond the maximum length.",
    )


def write_table(corpus_stats, manifest_paths, markdown_path, html_path, teacher: str | None = None) -> None:
    """Corpus and shard statistics as Markdown and HTML; a manifest's tokenizer is its folder's name (the
    teacher's folder is `teacher`, shown with the teacher's name when given)."""
    owner = lambda path: f"{teacher} (teacher)" if teacher and path.parent.name == "teacher" else path.parent.name
    manifests = {owner(Path(p)): read_json(p) for p in manifest_paths}
    tables = [*corpus_tables(read_json(corpus_stats)), shard_table(manifests)]
    write_text(markdown_path, markdown_page("Data", tables))
    write_text(html_path, html_page("Data", tables))
