"""The pre-training corpus: the parsed PubMed files (pubmed.py, one job per file) merged into one table.

`build_corpus` reads the key columns of all parsed files (peak memory grows by about 60 bytes per record,
   about 2 GB for the whole baseline: benchmarks/bench_pubmed.py), decides which row wins for each PMID,
   then streams file by file into the corpus, adding the training text.

Merge rules: files are read in the given order; for one PMID the highest `Version` wins, ties going to the
later occurrence (so update files override the baseline); a `DeleteCitation` removes every occurrence seen
before it. The corpus keeps the stream order: each winning record sits where it occurred, files in the given
order. The 2022 Hugging Face script did none of this (it read baseline files only, where these cases are rare).

Text format `title_abstract` (paper_spec.md §2): `ArticleTitle` with "[" and "]" removed, a space, the abstract,
stripped. Records without an abstract are kept (title only); nothing is filtered or de-duplicated by content.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .config import ConfigError
from .download import one_line
from .io import InputError, atomic_path, write_json
from .pubmed import RECORD_FIELDS, ROW_GROUP_ROWS

TEXT_FORMATS = ("title_abstract",)  # how a citation becomes training text (pubmed.text_format)

CORPUS_SCHEMA = pa.schema([*RECORD_FIELDS, ("text", pa.string())])
KEY_COLUMNS = ["pmid", "version", "deleted"]


def build_text(title: str, abstract: str, text_format: str) -> str:
    """The pre-training text of one citation. `title_abstract` (the paper's): title without '[' ']' (MEDLINE's mark
    for translated titles), a space, the abstract, stripped; a citation without abstract gives its title alone."""
    if text_format not in TEXT_FORMATS:
        raise ConfigError(
            f"invalid config value at 'pubmed.text_format': {text_format!r} is not one of {', '.join(TEXT_FORMATS)}"
        )
    return (title.replace("[", "").replace("]", "") + " " + abstract).strip()


# ------------------------------------------------------------------------------------------ stage 2: merge


def build_corpus(parsed_paths: list, out_parquet, stats_json, text_format: str) -> dict:
    """Merge parsed files (in the order given) into the corpus Parquet table and its statistics JSON."""
    build_text("", "", text_format)  # fail on an unknown text format before any reading
    sizes, pmids, versions, deleted = _read_keys(parsed_paths)
    winners, removed = _merge_plan(pmids, versions, deleted)
    deletions = [int(part.sum()) for part in np.split(deleted, np.cumsum(sizes)[:-1])]
    del pmids, versions, deleted  # only the winners are needed from here on
    stats = CorpusStats(text_format)
    with atomic_path(out_parquet) as tmp, pq.ParquetWriter(tmp, CORPUS_SCHEMA) as writer:
        offset = 0
        for path, size, file_deletions in zip(parsed_paths, sizes, deletions):
            first, last = np.searchsorted(winners, [offset, offset + size])  # winners are ascending
            part = _corpus_part(path, winners[first:last] - offset, text_format)
            writer.write_table(part, row_group_size=ROW_GROUP_ROWS)
            stats.add_file(path, size - file_deletions, file_deletions, part)
            offset += size
        if stats.records == 0:
            raise InputError(out_parquet, f"corpus is empty after reading {len(parsed_paths)} file(s)")
    result = stats.finish(removed)
    write_json(stats_json, result)
    return result


def _read_keys(parsed_paths: list):
    """Row counts per file, then the pmid, version and deleted columns of all files, end to end. The arrays are
    allocated once from the files' metadata and filled file by file, so no second copy is ever held."""
    sizes = [_parquet_rows(path) for path in parsed_paths]
    total = sum(sizes)
    pmids, versions, deleted = np.empty(total, np.int64), np.empty(total, np.int32), np.empty(total, bool)
    offset = 0
    for path, size in zip(parsed_paths, sizes):
        try:
            table = pq.read_table(path, columns=KEY_COLUMNS)
        except (OSError, pa.ArrowInvalid, KeyError) as err:
            raise _not_parsed(path, err) from None
        pmids[offset : offset + size] = table.column("pmid").to_numpy()
        versions[offset : offset + size] = table.column("version").fill_null(0).to_numpy()  # null on deletions
        deleted[offset : offset + size] = table.column("deleted").to_numpy()
        offset += size
    return sizes, pmids, versions, deleted


def _parquet_rows(path) -> int:
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowInvalid) as err:
        raise _not_parsed(path, err) from None


def _not_parsed(path, err: Exception) -> InputError:
    return InputError(path, f"not a parsed PubMed Parquet file ({one_line(err)[:200]})")


def _merge_plan(pmids, versions, deleted) -> tuple[np.ndarray, int]:
    """Global row numbers (file after file) of the records that make the corpus, ascending, and how many
    records a later DeleteCitation removed."""
    removed = _removed_by_deletion(pmids, deleted)
    return _latest_per_pmid(pmids, versions, ~(removed | deleted)), int(removed.sum())


def _removed_by_deletion(pmids, deleted) -> np.ndarray:
    """True for records that a DeleteCitation later in the stream removes."""
    deletion_rows = np.flatnonzero(deleted)
    if len(deletion_rows) == 0:  # the baseline files: no deletions, no work
        return np.zeros(len(pmids), bool)
    order = np.argsort(pmids[deletion_rows], kind="stable")  # per PMID, its deletions in stream order
    sorted_pmids, sorted_rows = pmids[deletion_rows][order], deletion_rows[order]
    last_of_group = np.append(sorted_pmids[1:] != sorted_pmids[:-1], True)
    unique_pmids, last_deletion = sorted_pmids[last_of_group], sorted_rows[last_of_group]
    where = np.clip(np.searchsorted(unique_pmids, pmids), 0, len(unique_pmids) - 1)
    rows = np.arange(len(pmids))
    return (unique_pmids[where] == pmids) & (rows < last_deletion[where]) & ~deleted


VERSION_BITS = 16  # PMIDs stay far below 2**47, versions below 2**16


def _latest_per_pmid(pmids, versions, keep) -> np.ndarray:
    """Ascending row numbers of the winner per PMID among `keep`: the highest version, then the latest. One
    stable sort on (PMID, version) keeps equal keys in stream order, so each group's last row is its winner."""
    candidates = np.flatnonzero(keep)
    key = (pmids[candidates] << VERSION_BITS) | np.minimum(versions[candidates], 2**VERSION_BITS - 1)
    order = np.argsort(key, kind="stable")
    sorted_pmids = key[order] >> VERSION_BITS
    last_of_group = np.append(sorted_pmids[1:] != sorted_pmids[:-1], True) if len(order) else np.zeros(0, bool)
    return np.sort(candidates[order[last_of_group]])


def _corpus_part(path, rows: np.ndarray, text_format: str) -> pa.Table:
    table = pq.read_table(path, columns=[name for name, _ in RECORD_FIELDS]).take(pa.array(rows, pa.int64()))
    titles, abstracts = table.column("title").to_pylist(), table.column("abstract").to_pylist()
    texts = [build_text(t or "", a or "", text_format) for t, a in zip(titles, abstracts)]
    return table.append_column(CORPUS_SCHEMA.field("text"), pa.array(texts, pa.string()))


class CorpusStats:
    """Counts gathered while the corpus is streamed out, one file at a time."""

    def __init__(self, text_format: str):
        self.text_format = text_format
        self.per_file = []
        self.records = self.with_abstract = self.empty_text = self.characters = 0

    def add_file(self, path, citations: int, deletions: int, part: pa.Table) -> None:
        self.per_file.append(
            {"file": Path(path).name, "citations": citations, "deletions": deletions, "records_kept": part.num_rows}
        )
        texts = part.column("text").to_pylist()
        self.records += part.num_rows
        self.with_abstract += sum(1 for a in part.column("abstract").to_pylist() if a)
        self.empty_text += sum(1 for t in texts if not t)
        self.characters += sum(len(t) for t in texts)

    def finish(self, removed: int) -> dict:
        parsed = sum(f["citations"] for f in self.per_file)
        return {
            "text_format": self.text_format,
            "files": len(self.per_file),
            "per_file": self.per_file,
            "citations_parsed": parsed,
            "deletions_listed": sum(f["deletions"] for f in self.per_file),
            "deleted": removed,
            "duplicates_replaced": parsed - removed - self.records,
            "records": self.records,
            "with_abstract": self.with_abstract,
            "title_only": self.records - self.with_abstract,
            "empty_text": self.empty_text,
            "characters": self.characters,
        }
