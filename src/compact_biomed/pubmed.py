"""PubMed baseline files: md5-verified fetching and streaming XML parsing.

Abstract text, a documented decision: the abstract is every `Article/Abstract/AbstractText` in document order,
flattened with itertext() (inline <i>, <sup>, MathML... keep their text, lose their tags) and joined with one
space; section labels are not inserted into the text but kept in `sections`. This is the reading of "the
abstract" a user of the dataset expects. It is NOT byte-for-byte what the 2021/2022 Hugging Face `pubmed`
script produced: its dict conversion silently kept only the FIRST AbstractText of a structured abstract
and, for sections with inline markup, the raw inner XML (tags included). `OtherAbstract` (e.g. the German
abstract of a German paper) is ignored, as it was there.

Parsed files: `parse_to_parquet` (one job per baseline file, so the 1,200+ files of the paper's corpus parse in
parallel) writes every citation of a file as a row, `DeleteCitation` entries as rows with `deleted = true`;
`huggingface_to_parquet` writes the Hugging Face `pubmed` dataset, the paper's source, in the same layout. The
corpus (merge, text) is built from the parsed files in corpus.py.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import re
import shutil
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from lxml import etree

from .download import download_bytes, download_to, one_line
from .io import InputError, atomic_path

PUBMED_ROOTS = {"PubmedArticleSet", "MedlineCitationSet"}
GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 20
ROW_GROUP_ROWS = 10_000  # small enough that a tokenisation shard reads little beyond its own rows

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

# ----------------------------------------------------------------------------------------------- checksums

_NCBI_MD5 = re.compile(r"^MD5\((?P<name>[^)]*)\)\s*=\s*(?P<hash>[0-9a-fA-F]{32})$")
_BARE_MD5 = re.compile(r"^(?P<hash>[0-9a-fA-F]{32})(?:\s+\*?(?P<name>\S.*))?$")


def parse_md5_sidecar(path) -> str:
    """The lower-case hex digest in an md5 sidecar: NCBI's `MD5(name)= <hash>`, or `<hash>  [name]`."""
    try:
        line = Path(path).read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read md5 sidecar ({one_line(err)})") from None
    return _parse_md5_line(path, line)


def _parse_md5_line(source, text: str) -> str:
    line = text.strip()
    match = _NCBI_MD5.match(line) or _BARE_MD5.match(line)
    if match is None:
        raise InputError(source, f"not an md5 sidecar: expected 'MD5(name)= <32 hex>' or '<32 hex>', got {line[:80]!r}")
    return match["hash"].lower()


def file_md5(path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ fetching


def fetched_paths(name: str, out_dir) -> tuple[Path, Path]:
    """Where `fetch` puts baseline file `name` (with or without .xml.gz) and its md5 sidecar."""
    final = Path(out_dir) / f"{name.removesuffix('.xml.gz')}.xml.gz"
    return final, final.with_name(final.name + ".md5")


def fetch(name: str, out_dir, base_url: str | None = None, local_dir=None) -> Path:
    """Produce `out_dir/<name>.xml.gz` and its `.md5` sidecar, copied from `local_dir` or downloaded from `base_url`
    (the config's `pubmed.base_url`).

    The data is checked against the sidecar before it gets its final name, so a present output is a verified one.
    A download is one attempt: a failure (network or md5) leaves nothing and is one line; Snakemake's `retries:`
    reruns the job. Returns the path of the .xml.gz.
    """
    final, sidecar_final = fetched_paths(name, out_dir)
    if local_dir is not None:
        _copy_verified(Path(local_dir) / final.name, final, sidecar_final)
    elif base_url is None:
        raise ValueError("fetch needs a base_url (the config's pubmed.base_url) or a local_dir")
    else:
        url = base_url.rstrip("/") + "/" + final.name
        _download_verified(url, final, sidecar_final)
    return final


def _copy_verified(source: Path, final: Path, sidecar_final: Path) -> None:
    source_sidecar = source.with_name(source.name + ".md5")
    for required in (source, source_sidecar):
        if not required.is_file():
            raise InputError(required, "missing (local_dir must hold <name>.xml.gz and <name>.xml.gz.md5)")
    expected = parse_md5_sidecar(source_sidecar)
    with atomic_path(final) as tmp:
        shutil.copyfile(source, tmp)
        _check_md5(source, expected, file_md5(tmp))
        _write_bytes_atomically(sidecar_final, source_sidecar.read_bytes())


def _download_verified(url: str, final: Path, sidecar_final: Path) -> None:
    sidecar_bytes = download_bytes(url + ".md5")
    expected = _parse_sidecar_bytes(url + ".md5", sidecar_bytes)
    with atomic_path(final) as tmp:
        _check_md5(url, expected, download_to(url, tmp))
        _write_bytes_atomically(sidecar_final, sidecar_bytes)


def _parse_sidecar_bytes(url: str, data: bytes) -> str:
    try:
        line = data.decode("ascii")
    except UnicodeDecodeError:
        raise InputError(url, "md5 sidecar is not ASCII text") from None
    return _parse_md5_line(url, line)


def verify(path, sidecar) -> None:
    """Check a baseline file against its md5 sidecar; InputError names the file."""
    _check_md5(path, parse_md5_sidecar(sidecar), file_md5(path))


def _check_md5(source, expected: str, actual: str) -> None:
    if actual != expected:
        raise InputError(source, f"md5 mismatch: sidecar says {expected}, data has {actual}")


def _write_bytes_atomically(final: Path, data: bytes) -> None:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)


# ------------------------------------------------------------------------------------------------- parsing


def iter_citations(path) -> Iterator[dict]:
    """Stream the citations of a PubMed/MEDLINE XML file (.xml.gz or .xml) in constant memory.

    Yields `{"pmid", "version", "title", "abstract", "sections": [[label, text], ...], "language", "year"}`
    per citation, and `{"pmid", "deleted": True}` per `DeleteCitation/PMID`. Handles the current
    `PubmedArticleSet` and the legacy `MedlineCitationSet`; `PubmedBookArticle` records are skipped.
    Unreadable, truncated, malformed, empty or non-PubMed files raise InputError naming `path`.
    """
    try:
        with _open_maybe_gzip(path) as stream:
            yield from _iter_stream(path, stream)
    except InputError:
        raise
    except etree.XMLSyntaxError as err:
        not_gzip = str(path).endswith(".gz") and not _is_gzip(path)  # named .gz, read as plain XML
        raise InputError(path, ("not gzip, and " if not_gzip else "") + _describe_syntax_error(err)) from None
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise InputError(path, f"corrupt or truncated gzip ({one_line(err)})") from None
    except OSError as err:
        raise InputError(path, f"cannot read ({one_line(err)})") from None


def _open_maybe_gzip(path):
    # Decide by content, not by name: a plain .xml and a mis-named file both work.
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def _is_gzip(path) -> bool:
    with open(path, "rb") as probe:
        return probe.read(2) == GZIP_MAGIC


# The records directly under each root. Subscribing to these alone (not also to the MedlineCitation inside each
# PubmedArticle) halves the events Python handles per citation.
RECORD_TAGS = {
    "PubmedArticleSet": ("PubmedArticle", "PubmedBookArticle", "DeleteCitation"),
    "MedlineCitationSet": ("MedlineCitation", "DeleteCitation"),
}
_PROLOG = re.compile(rb"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", re.DOTALL)
_FIRST_TAG = re.compile(rb"<([A-Za-z_][\w.:-]*)")


def _peek_root(path, stream) -> str | None:
    """The root element's name from the first 64 KB (after the XML declaration, comments and DOCTYPE); the
    stream is rewound (cheap at offset 0, also for gzip)."""
    head = stream.read(1 << 16)
    if not head:
        raise InputError(path, "empty file (no XML at all)")
    stream.seek(0)
    found = _FIRST_TAG.search(_PROLOG.sub(b"", head))
    return found.group(1).decode("ascii", "replace") if found else None


def _iter_stream(path, stream) -> Iterator[dict]:
    root = _peek_root(path, stream)
    if root is not None:
        _check_root(path, root)
    parser = etree.XMLPullParser(
        events=("end",),
        tag=RECORD_TAGS.get(root, RECORD_TAGS["PubmedArticleSet"]),  # no root seen: lxml reports the syntax error
        resolve_entities=False,
        no_network=True,
        huge_tree=True,
    )
    for chunk in _chunks_without_unused_elements(stream):
        parser.feed(chunk)
        for _, elem in parser.read_events():
            yield from _records(path, elem)
            _release(elem)
    _check_root(path, parser.close().tag)


def _records(path, elem) -> Iterator[dict]:
    record = elem.find("MedlineCitation") if elem.tag == "PubmedArticle" else elem
    try:
        if record is None:
            raise ValueError("no <MedlineCitation>")
        if record.tag == "MedlineCitation":
            yield _citation(record)
        elif record.tag == "DeleteCitation":
            for pmid in record.iter("PMID"):
                yield {"pmid": int(pmid.text), "deleted": True}
    except (AttributeError, TypeError, ValueError) as err:  # a missing or non-numeric PMID, Version...
        bad = elem if record is None else record
        raise InputError(path, f"bad <{bad.tag}> at line {bad.sourceline}: {one_line(err)}") from None


# Elements no field is read from and that make up about two thirds of a baseline file's bytes (reference lists,
# article ids, history; author lists). Cutting them out (bytes.find, C speed) before lxml builds them saves about
# a third of lxml's time (benchmarks/bench_pubmed.py).
UNUSED_ELEMENTS = ((b"<PubmedData>", b"</PubmedData>"), (b"<AuthorList", b"</AuthorList>"))
# Ends of records: a chunk is cut after the last one, so no element spans two chunks.
RECORD_ENDS = (b"</PubmedArticle>", b"</MedlineCitation>", b"</DeleteCitation>", b"</PubmedBookArticle>")


def _chunks_without_unused_elements(stream) -> Iterator[bytes]:
    carry = b""
    for block in iter(lambda: stream.read(CHUNK_BYTES), b""):
        data = carry + block
        cut = max((found + len(end) for end in RECORD_ENDS if (found := data.rfind(end)) >= 0), default=0)
        body, carry = data[:cut], data[cut:]
        for start, end in UNUSED_ELEMENTS:
            body = _drop_elements(body, start, end)
        yield body
    yield carry  # the rest, as it is: a truncated file must still look truncated to the parser


def _drop_elements(data: bytes, start: bytes, end: bytes) -> bytes:
    """`data` without every start...end span; each span leaves its newlines, so error line numbers stay right."""
    parts, pos = [], 0
    while (begin := data.find(start, pos)) >= 0 and (stop := data.find(end, begin)) >= 0:
        stop += len(end)
        parts += (data[pos:begin], b"\n" * data.count(b"\n", begin, stop))
        pos = stop
    parts.append(data[pos:])
    return b"".join(parts)


def _check_root(path, tag: str) -> None:
    if tag not in PUBMED_ROOTS:
        expected = " or ".join(f"<{root}>" for root in sorted(PUBMED_ROOTS))
        raise InputError(path, f"not PubMed XML: root element <{tag}>, expected {expected}")


def _release(elem) -> None:
    """Free a finished top-level record and the already-processed siblings before it (constant memory)."""
    elem.clear(keep_tail=False)
    parent = elem.getparent()
    while elem.getprevious() is not None:
        del parent[0]


def _citation(citation) -> dict:
    pmid = citation.find("PMID")
    article = citation.find("Article")
    title = _flat_text(article.find("ArticleTitle")) if article is not None else ""
    sections = _abstract_sections(article)
    return {
        "pmid": int(pmid.text),
        "version": int(pmid.get("Version", "1")),
        "title": title,
        "abstract": " ".join(text for _, text in sections if text),
        "sections": sections,
        "language": (article.findtext("Language") or "") if article is not None else "",
        "year": _publication_year(article),
    }


def _abstract_sections(article) -> list[list[str]]:
    if article is None:
        return []
    return [[node.get("Label", ""), _flat_text(node)] for node in article.iterfind("Abstract/AbstractText")]


def _flat_text(node) -> str:
    """The element's text with inline markup removed and whitespace runs collapsed (MathML is indented)."""
    if node is None:
        return ""
    return " ".join("".join(node.itertext()).split())


_YEAR = re.compile(r"\b(\d{4})\b")


def _publication_year(article) -> int | None:
    """Journal issue year; `MedlineDate` ("1998 Dec-1999 Jan") gives its first year."""
    if article is None:
        return None
    pub_date = article.find("Journal/JournalIssue/PubDate")
    if pub_date is None:
        return None
    year = pub_date.findtext("Year")
    if year is not None and year.isdigit():
        return int(year)
    found = _YEAR.search(year or pub_date.findtext("MedlineDate") or "")
    return int(found.group(1)) if found else None


def _describe_syntax_error(err: etree.XMLSyntaxError) -> str:
    message = one_line(err.msg or err)
    if "Document is empty" in message or "Start tag expected" in message:
        return f"not XML ({message})"
    if "Premature end of data" in message or "no element found" in message:
        return f"truncated XML ({message})"
    return f"malformed XML ({message})"


# ------------------------------------------------------------------------------------------ parsed files


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
    columns["sections"] = [
        None if sections is None else [{"label": label, "text": text} for label, text in sections]
        for sections in columns["sections"]
    ]
    return pa.table(columns, schema=PARSED_SCHEMA)


def huggingface_to_parquet(
    path: str, out_parquet, name: str | None = None, split: str = "train", revision: str | None = None
) -> dict:
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
