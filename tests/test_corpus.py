"""The two corpus stages: one parsed Parquet file per source (baseline XML or the Hugging Face dataset), then
the merge; on the real sample and on small hand-made inputs."""

import gzip

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import huggingface_pubmed_dataset, shared_path

from compact_biomed.corpus import CORPUS_SCHEMA, build_corpus
from compact_biomed.io import InputError
from compact_biomed.pubmed import PARSED_SCHEMA, huggingface_to_parquet, iter_citations, parse_to_parquet


@pytest.fixture(scope="module")
def sample():
    return shared_path("pubmed", "pubmed25n1274.xml.gz")


def test_parsed_file_holds_every_citation_with_its_sections(sample, tmp_path):
    counts = parse_to_parquet(sample, tmp_path / "parsed.parquet")
    table = pq.read_table(tmp_path / "parsed.parquet")
    assert table.schema == PARSED_SCHEMA
    records = list(iter_citations(sample))
    assert counts == {"file": sample.name, "citations": len(records), "deletions": 0}
    assert table.column("pmid").to_pylist() == [r["pmid"] for r in records]
    structured = next(r for r in records if len(r["sections"]) > 2)
    row = table.filter(pa.compute.equal(table.column("pmid"), structured["pmid"])).to_pylist()[0]
    assert [(s["label"], s["text"]) for s in row["sections"]] == [tuple(s) for s in structured["sections"]]
    assert row["abstract"] == structured["abstract"] and not row["deleted"]


def test_deletions_are_rows_flagged_deleted(tmp_path):
    xml = tmp_path / "update.xml"
    xml.write_text(
        '<PubmedArticleSet><DeleteCitation><PMID Version="1">7</PMID><PMID Version="1">8</PMID>'
        "</DeleteCitation></PubmedArticleSet>"
    )
    assert parse_to_parquet(xml, tmp_path / "p.parquet")["deletions"] == 2
    rows = pq.read_table(tmp_path / "p.parquet").to_pylist()
    assert [(r["pmid"], r["deleted"], r["title"]) for r in rows] == [(7, True, None), (8, True, None)]


def test_a_bad_xml_file_leaves_no_parsed_file(sample, tmp_path):
    truncated = tmp_path / "truncated.xml.gz"
    truncated.write_bytes(sample.read_bytes()[:5000])
    with pytest.raises(InputError, match="truncated.xml.gz"):
        parse_to_parquet(truncated, tmp_path / "p.parquet")
    assert list(tmp_path.iterdir()) == [truncated]


def test_parsed_files_are_byte_identical_across_runs(sample, tmp_path):
    parse_to_parquet(sample, tmp_path / "a.parquet")
    parse_to_parquet(sample, tmp_path / "b.parquet")
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_merge_rejects_a_file_that_is_not_parsed_pubmed(sample, tmp_path):
    parse_to_parquet(sample, tmp_path / "good.parquet")
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "other.parquet")
    with pytest.raises(InputError, match="other.parquet: not a parsed PubMed Parquet file"):
        build_corpus(
            [tmp_path / "good.parquet", tmp_path / "other.parquet"],
            tmp_path / "c.parquet",
            tmp_path / "s.json",
            text_format="title_abstract",
        )
    assert not (tmp_path / "c.parquet").exists() and not (tmp_path / "s.json").exists()


def test_corpus_is_written_in_row_groups(sample, tmp_path, monkeypatch):
    # A tokenisation shard reads only the row groups overlapping its rows: the corpus must not be one group.
    from compact_biomed import corpus

    monkeypatch.setattr(corpus, "ROW_GROUP_ROWS", 7)
    parse_to_parquet(sample, tmp_path / "p.parquet")
    build_corpus([tmp_path / "p.parquet"], tmp_path / "c.parquet", tmp_path / "s.json", text_format="title_abstract")
    metadata = pq.ParquetFile(tmp_path / "c.parquet").metadata
    assert metadata.num_rows == 30 and metadata.num_row_groups == 5
    assert pq.read_schema(tmp_path / "c.parquet") == CORPUS_SCHEMA


# ---------------------------------------------------------------------------- the Hugging Face pubmed dataset


def test_huggingface_dataset_gives_the_papers_text(tmp_path):
    dataset = huggingface_pubmed_dataset(
        tmp_path / "pubmed",
        [(11, "[Translated.]", "An abstract."), (12, "Only title.", ""), (11, "Twice.", "Later copy.")],
    )
    counts = huggingface_to_parquet(str(dataset), tmp_path / "huggingface.parquet")
    assert counts["citations"] == 3
    stats = build_corpus(
        [tmp_path / "huggingface.parquet"], tmp_path / "c.parquet", tmp_path / "s.json", text_format="title_abstract"
    )
    rows = pq.read_table(tmp_path / "c.parquet").to_pylist()
    assert [(r["pmid"], r["text"]) for r in rows] == [(12, "Only title."), (11, "Twice. Later copy.")]
    assert stats["duplicates_replaced"] == 1 and stats["title_only"] == 1


def test_huggingface_dataset_errors_name_the_dataset(tmp_path):
    with pytest.raises(InputError, match="absent: cannot load the Hugging Face dataset"):
        huggingface_to_parquet(str(tmp_path / "absent"), tmp_path / "out.parquet")
    other = tmp_path / "other"
    (other / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["not pubmed"]}), other / "data" / "train.parquet")
    with pytest.raises(InputError, match="other: not the Hugging Face pubmed layout"):
        huggingface_to_parquet(str(other), tmp_path / "out.parquet")
    assert not (tmp_path / "out.parquet").exists()


def test_gzip_sample_and_merge_agree_with_an_independent_count(sample, tmp_path):
    parse_to_parquet(sample, tmp_path / "p.parquet")
    stats = build_corpus(
        [tmp_path / "p.parquet"], tmp_path / "c.parquet", tmp_path / "s.json", text_format="title_abstract"
    )
    raw = gzip.decompress(sample.read_bytes())
    assert stats["records"] == raw.count(b"<PubmedArticle>") == 30
    assert stats["per_file"] == [{"file": "p.parquet", "citations": 30, "deletions": 0, "records_kept": 30}]


def _merge_by_hand(rows):
    """The merge rules applied row by row: a deletion forgets the PMID, a record replaces one of lower or equal
    version."""
    kept = {}
    for index, (pmid, version, deleted) in enumerate(rows):
        if deleted:
            kept.pop(pmid, None)
        elif pmid not in kept or version >= rows[kept[pmid]][1]:
            kept[pmid] = index
    return sorted(kept.values())


@pytest.mark.parametrize("seed", range(20))
def test_vectorised_merge_agrees_with_the_rules_applied_by_hand(seed):
    import numpy as np

    from compact_biomed.corpus import _merge_plan

    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 300))
    rows = [(int(rng.integers(1, 40)), int(rng.integers(1, 4)), bool(rng.random() < 0.1)) for _ in range(size)]
    pmids, versions, deleted = (np.array(column) for column in zip(*rows))
    winners, _ = _merge_plan(pmids.astype(np.int64), versions.astype(np.int32), deleted.astype(bool))
    assert winners.tolist() == _merge_by_hand(rows)
