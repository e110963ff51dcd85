"""The pre-training corpus: each source file parsed to Parquet on its own, then merged into one table.

Two stages, so that the 1,200+ baseline files of the paper's corpus parse in parallel jobs and the merge holds
only keys in memory, not text:
1. `parse_to_parquet` (one job per baseline file) writes every citation of a file as a row, `DeleteCitation`
   entries as rows with `deleted = true`. `huggingface_to_parquet` writes the Hugging Face `pubmed` dataset,
   the paper's source, in the same layout.
2. `build_corpus` reads the key columns of all parsed files (peak memory grows by 50-95 bytes per record,
   2-3 GB for the whole baseline: benchmarks/bench_pubmed.py), decides which row wins for each PMID,
   then streams file by file into the corpus, adding the training text.

Merge rules: files are read in the given order; for one PMID the highest `Version` wins, ties going to the
later occurrence (so update files override the baseline); a `DeleteCitation` removes every occurrence seen
before it. The corpus keeps the stream order: each winning record sits where it occurred, files in the given
order. The 2022 Hugging Face script did none of this (it read baseline files only, where these cases are rare).

Text recipe (paper_spec.md §2): `ArticleTitle` with "[" and "]" removed, a space, the abstract, stripped.
Records without an abstract are kept (title only); nothing is filtered or de-duplicated by content.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .download import one_line
from .io import InputError, atomic_path, write_json
from .pubmed import iter_citations

ROW_GROUP_ROWS = 10_000  # small enough that a tokenisation shard reads little beyond its own rows
RECIPES = ("paper",)

SECTION = pa.struct([("label", pa.string()), ("text", pa.string())])
RECORD_FIELDS = [
    ("pmid", pa.int64()),
    ("version", pa.int32()),
    ("title", pa.string()),
    ("abstract", pa.string()),
    ("sections", pa.list_(SECTION)),
    ("language", pa.string()),
    ("year", pa.int32()),
]
PARSED_SCHEMA = pa.schema([*RECORD_FIELDS, ("deleted", pa.bool_())])
CORPUS_SCHEMA = pa.schema([*RECORD_FIELDS, ("text", pa.string())])
KEY_COLUMNS = ["pmid", "version", "deleted"]


def build_text(title: str, abstract: str, recipe: str = "paper") -> str:
    """The pre-training text of one citation. `paper`: title without '[' ']' (MEDLINE's mark for translated
    titles), a space, the abstract, stripped; a citation without abstract gives its title alone."""
    if recipe not in RECIPES:
        raise ValueError(f"unknown text recipe {recipe!r}; known: {', '.join(RECIPES)}")
    return (title.replace("[", "").replace("]", "") + " " + abstract).strip()


# ------------------------------------------------------------------------------------------ stage 1: parse


def parse_to_parquet(xml_path, out_parquet) -> dict:
    """Every citation and deletion of one PubMed XML file as rows of a Parquet file (PARSED_SCHEMA)."""
    counts = {"file": Path(xml_path).name, "citations": 0, "deletions": 0}
    with atomic_path(out_parquet) as tmp, pq.ParquetWriter(tmp, PARSED_SCHEMA) as writer:
        batch = []
        for record in iter_citations(xml_path):
            counts["deletions" if record.get("deleted") else "citations"] += 1
            batch.append(record)
            if len(batch) == ROW_GROUP_ROWS:
                writer.write_table(_parsed_table(batch))
                batch = []
        writer.write_table(_parsed_table(batch))
    return counts


def _parsed_table(records: list[dict]) -> pa.Table:
    columns = {name: [record.get(name) for record in records] for name in PARSED_SCHEMA.names}
    columns["deleted"] = [bool(flag) for flag in columns["deleted"]]
    columns["sections"] = [None if sections is None else [{"label": label, "text": text} for label, text in sections]
                           for sections in columns["sections"]]
    return pa.table(columns, schema=PARSED_SCHEMA)


def huggingface_to_parquet(path: str, out_parquet, name: str | None = None, split: str = "train",
                           revision: str | None = None) -> dict:
    """The Hugging Face `pubmed` dataset (the paper's corpus source, spec §2) in the parsed layout.

    `path` is a hub id or a local folder holding the dataset in that layout (a `MedlineCitation` struct with
    `PMID`, `Article.ArticleTitle`, `Article.Abstract.AbstractText`, `Article.Language`). It is streamed, so
    memory stays flat whatever its size. Its abstract is what the dataset holds: for the 2022 script, the first
    section of a structured abstract only (see pubmed.py).
    """
    import datasets

    try:
        dataset = datasets.load_dataset(path, name, split=split, revision=revision, streaming=True)
        batches = dataset.iter(batch_size=ROW_GROUP_ROWS)
        first = next(batches, None)
    except (OSError, ValueError, datasets.exceptions.DatasetNotFoundError) as err:
        raise InputError(path, f"cannot load the Hugging Face dataset ({one_line(err)[:300]})") from None
    if first is None or "MedlineCitation" not in first:
        columns = sorted(first) if first else []
        raise InputError(path, f"not the Hugging Face pubmed layout: no MedlineCitation column (columns: {columns})")
    rows = 0
    with atomic_path(out_parquet) as tmp, pq.ParquetWriter(tmp, PARSED_SCHEMA) as writer:
        try:
            for number, batch in enumerate(itertools.chain([first], batches)):
                records = [_huggingface_record(path, citation) for citation in batch["MedlineCitation"]]
                writer.write_table(_parsed_table(records))
                rows += len(records)
                if number % 100 == 0:  # progress about every million citations
                    print(f"{path}: {rows} citations", file=sys.stderr)
        except OSError as err:  # the connection dropped mid-stream: nothing is kept, the job's retry starts over
            raise InputError(path, f"reading failed after {rows} citations ({one_line(err)[:300]})") from None
    return {"file": str(path), "citations": rows, "deletions": 0}


def _huggingface_record(source, citation: dict) -> dict:
    article = citation.get("Article") or {}
    try:
        pmid = int(citation["PMID"])
    except (KeyError, TypeError, ValueError):
        raise InputError(source, f"a MedlineCitation without a numeric PMID: {str(citation)[:120]}") from None
    abstract = ((article.get("Abstract") or {}).get("AbstractText") or "").strip()
    return {
        "pmid": pmid,
        "version": 1,
        "title": article.get("ArticleTitle") or "",
        "abstract": abstract,
        "sections": [["", abstract]] if abstract else [],
        "language": article.get("Language") or "",
        "year": None,  # the dataset has completion and revision dates, not the publication year
    }


# ------------------------------------------------------------------------------------------ stage 2: merge


def build_corpus(parsed_paths: list, out_parquet, stats_json, recipe: str = "paper") -> dict:
    """Merge parsed files (in the order given) into the corpus Parquet table and its statistics JSON."""
    build_text("", "", recipe)  # fail on an unknown recipe before any reading
    keys = [_read_keys(path) for path in parsed_paths]
    winners, removed = _merge_plan(keys)
    stats = CorpusStats(recipe)
    with atomic_path(out_parquet) as tmp, pq.ParquetWriter(tmp, CORPUS_SCHEMA) as writer:
        offset = 0
        for path, file_keys in zip(parsed_paths, keys):
            size = len(file_keys["pmid"])
            rows = winners[(winners >= offset) & (winners < offset + size)] - offset
            part = _corpus_part(path, rows, recipe)
            writer.write_table(part, row_group_size=ROW_GROUP_ROWS)
            stats.add_file(path, file_keys, part)
            offset += size
        if stats.records == 0:
            raise InputError(out_parquet, f"corpus is empty after reading {len(parsed_paths)} file(s)")
    result = stats.finish(removed)
    write_json(stats_json, result)
    return result


def _read_keys(path) -> dict:
    try:
        table = pq.read_table(path, columns=KEY_COLUMNS)
    except (OSError, pa.ArrowInvalid, KeyError) as err:
        raise InputError(path, f"not a parsed PubMed Parquet file ({one_line(err)[:200]})") from None
    return {name: table.column(name).to_numpy() for name in KEY_COLUMNS}


def _merge_plan(keys: list[dict]) -> tuple[np.ndarray, int]:
    """Global row numbers (file after file) of the records that make the corpus, ascending, and how many
    records a later DeleteCitation removed."""
    empty = np.zeros(0, np.int64)
    pmids = np.concatenate([k["pmid"] for k in keys]) if keys else empty
    versions = np.concatenate([k["version"] for k in keys]) if keys else empty
    deleted = np.concatenate([k["deleted"] for k in keys]) if keys else np.zeros(0, bool)
    seqs = np.arange(len(pmids), dtype=np.int64)
    removed = _removed_by_deletion(pmids, seqs, pmids[deleted], seqs[deleted]) & ~deleted
    return np.sort(_latest_per_pmid(pmids, versions, seqs, ~(removed | deleted))), int(removed.sum())


def _removed_by_deletion(pmids, seqs, del_pmids, del_seqs) -> np.ndarray:
    """True for records that a DeleteCitation later in the stream removes."""
    if len(del_pmids) == 0:
        return np.zeros(len(pmids), bool)
    order = np.lexsort((del_seqs, del_pmids))
    sorted_pmids, sorted_seqs = del_pmids[order], del_seqs[order]
    last_of_group = np.append(sorted_pmids[1:] != sorted_pmids[:-1], True)
    unique_pmids, last_deletion = sorted_pmids[last_of_group], sorted_seqs[last_of_group]
    where = np.clip(np.searchsorted(unique_pmids, pmids), 0, len(unique_pmids) - 1)
    return (unique_pmids[where] == pmids) & (seqs < last_deletion[where])


def _latest_per_pmid(pmids, versions, seqs, keep) -> np.ndarray:
    """Row numbers of the winner per PMID among `keep`: the highest version, then the latest."""
    candidates = np.flatnonzero(keep)
    order = candidates[np.lexsort((seqs[candidates], versions[candidates], pmids[candidates]))]
    sorted_pmids = pmids[order]
    last_of_group = np.append(sorted_pmids[1:] != sorted_pmids[:-1], True) if len(order) else np.zeros(0, bool)
    return order[last_of_group]


def _corpus_part(path, rows: np.ndarray, recipe: str) -> pa.Table:
    table = pq.read_table(path, columns=[name for name, _ in RECORD_FIELDS]).take(pa.array(rows, pa.int64()))
    titles, abstracts = table.column("title").to_pylist(), table.column("abstract").to_pylist()
    texts = [build_text(t or "", a or "", recipe) for t, a in zip(titles, abstracts)]
    return table.append_column(CORPUS_SCHEMA.field("text"), pa.array(texts, pa.string()))


class CorpusStats:
    """Counts gathered while the corpus is streamed out, one file at a time."""

    def __init__(self, recipe: str):
        self.recipe = recipe
        self.per_file = []
        self.records = self.with_abstract = self.empty_text = self.characters = 0

    def add_file(self, path, keys: dict, part: pa.Table) -> None:
        deletions = int(keys["deleted"].sum())
        self.per_file.append({"file": Path(path).name, "citations": len(keys["pmid"]) - deletions,
                              "deletions": deletions, "records_kept": part.num_rows})
        texts = part.column("text").to_pylist()
        self.records += part.num_rows
        self.with_abstract += sum(1 for a in part.column("abstract").to_pylist() if a)
        self.empty_text += sum(1 for t in texts if not t)
        self.characters += sum(len(t) for t in texts)

    def finish(self, removed: int) -> dict:
        parsed = sum(f["citations"] for f in self.per_file)
        return {
            "recipe": self.recipe,
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
