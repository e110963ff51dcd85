"""Tokenisation shards: the paper's call reproduced, deterministic bytes, a partition of the corpus, packing."""

import itertools
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import TINY_TEXTS

from compact_biomed.config import ConfigError
from compact_biomed.io import InputError, read_json
from compact_biomed.shards import shard_bounds, tokenize_shard, write_manifest
from compact_biomed.tokenizer import build_wordpiece

MAX_LENGTH = 16
# Varied lengths: some texts fit, some are truncated, one is empty (a record with neither title nor abstract).
TEXTS = [" ".join([text] * (1 + i % 4)) for i, text in enumerate(TINY_TEXTS[:22])] + [""]


def load_shards(shard_dirs):
    """The shards as saved, every column, in the order given (pre-training reads them with data.load_shards)."""
    import datasets

    return datasets.concatenate_datasets([datasets.load_from_disk(str(shard_dir)) for shard_dir in shard_dirs])


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A cased WordPiece tokenizer only (no model, so no torch)."""
    out = tmp_path_factory.mktemp("tokenizer")
    build_wordpiece(TINY_TEXTS, out, lowercase=False, vocab_size=300)
    return out


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.parquet"
    pq.write_table(
        pa.table({"pmid": pa.array(range(1, len(TEXTS) + 1), pa.int64()), "text": TEXTS}), path, row_group_size=5
    )  # several row groups, so shard slices cross group boundaries
    return path


def _tokenize_all(corpus, tokenizer_dir, out, num_shards, mode="one_citation"):
    dirs = [out / f"shard-{i}-of-{num_shards}" for i in range(num_shards)]
    stats = [
        tokenize_shard(corpus, tokenizer_dir, d, i, num_shards, max_length=MAX_LENGTH, mode=mode)
        for i, d in enumerate(dirs)
    ]
    return dirs, stats


def test_paper_mode_equals_the_papers_tokenizer_call(corpus, tokenizer_dir, tokenizer, tmp_path):
    dirs, stats = _tokenize_all(corpus, tokenizer_dir, tmp_path, 3)
    reference = tokenizer(TEXTS, truncation=True, max_length=MAX_LENGTH, return_special_tokens_mask=True)
    dataset = load_shards(dirs)
    assert dataset.column_names == ["input_ids", "special_tokens_mask"]
    assert dataset["input_ids"][:] == reference["input_ids"]
    assert dataset["special_tokens_mask"][:] == reference["special_tokens_mask"]
    assert sum(s["tokens"] for s in stats) == sum(len(ids) for ids in reference["input_ids"])


def test_truncated_tokens_are_counted(corpus, tokenizer_dir, tokenizer, tmp_path):
    _, stats = _tokenize_all(corpus, tokenizer_dir, tmp_path, 2)
    full_lengths = [len(ids) for ids in tokenizer(TEXTS)["input_ids"]]
    expected = sum(max(0, length - MAX_LENGTH) for length in full_lengths)
    assert expected > 0
    assert sum(s["truncated_tokens"] for s in stats) == expected


def test_same_inputs_give_byte_identical_shards(corpus, tokenizer_dir, tmp_path):
    first = tokenize_shard(corpus, tokenizer_dir, tmp_path / "a", 1, 3, max_length=MAX_LENGTH, mode="one_citation")
    second = tokenize_shard(corpus, tokenizer_dir, tmp_path / "b", 1, 3, max_length=MAX_LENGTH, mode="one_citation")
    assert first == second
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert "data-00000-of-00001.arrow" in names and "stats.json" in names
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # rerunning into an existing output replaces it with the same bytes
    tokenize_shard(corpus, tokenizer_dir, tmp_path / "a", 1, 3, max_length=MAX_LENGTH, mode="one_citation")
    assert (tmp_path / "a" / "stats.json").read_bytes() == (tmp_path / "b" / "stats.json").read_bytes()


@pytest.mark.parametrize("num_shards", [1, 4, len(TEXTS)])
def test_shards_partition_the_corpus(corpus, tokenizer_dir, tmp_path, num_shards):
    _, stats = _tokenize_all(corpus, tokenizer_dir, tmp_path, num_shards)
    expected_sizes = [len(part) for part in np.array_split(np.arange(len(TEXTS)), num_shards)]
    assert [s["rows"] for s in stats] == expected_sizes
    bounds = [tuple(s["corpus_rows"]) for s in stats]
    assert bounds[0][0] == 0 and bounds[-1][1] == len(TEXTS)
    assert all(previous[1] == current[0] for previous, current in itertools.pairwise(bounds))


def test_shard_bounds_match_array_split():
    for rows in (1, 7, 10, 23):
        for shards in range(1, rows + 1):
            parts = np.array_split(np.arange(rows), shards)
            assert [shard_bounds(rows, i, shards) for i in range(shards)] == [
                (int(p[0]), int(p[-1]) + 1) for p in parts
            ]


def test_packed_mode_makes_full_blocks_from_every_token(corpus, tokenizer_dir, tokenizer, tmp_path):
    dirs, stats = _tokenize_all(corpus, tokenizer_dir, tmp_path, 2, mode="packed")
    sep, cls = tokenizer.sep_token_id, tokenizer.cls_token_id
    for shard_dir, shard_stats in zip(dirs, stats):
        ids = load_shards([shard_dir])["input_ids"][:]
        start, stop = shard_stats["corpus_rows"]
        assert ids and all(len(row) == MAX_LENGTH and row[0] == cls and row[-1] == sep for row in ids)
        documents = tokenizer(TEXTS[start:stop], add_special_tokens=False)["input_ids"]
        stream = [token for document in documents for token in document + [sep]]
        bodies = [t for row in ids for t in row[1:-1]]
        assert bodies == stream[: len(bodies)]
        assert shard_stats["truncated_tokens"] == len(stream) - len(bodies) < MAX_LENGTH - 2
        assert shard_stats["tokens"] == len(ids) * MAX_LENGTH
    masks = load_shards(dirs)
    for row_ids, row_mask in zip(masks["input_ids"][:], masks["special_tokens_mask"][:]):
        assert row_mask == [int(t in (cls, sep)) for t in row_ids]


def test_too_many_shards_is_an_input_error_naming_the_corpus(corpus, tokenizer_dir, tmp_path):
    with pytest.raises(InputError, match=r"corpus\.parquet.*only 23 rows"):
        tokenize_shard(
            corpus, tokenizer_dir, tmp_path / "out", 0, len(TEXTS) + 1, mode="one_citation", max_length=MAX_LENGTH
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        ({"shard": 3, "num_shards": 3}, ValueError, "outside 0..2"),
        ({"shard": -1, "num_shards": 3}, ValueError, "outside"),
        ({"shard": 0, "num_shards": 1, "mode": "grouped"}, ConfigError, "'tokenize.mode': 'grouped'"),
        ({"shard": 0, "num_shards": 1, "max_length": 2}, ConfigError, "'tokenize.max_length': 2"),
    ],
)
def test_bad_arguments(corpus, tokenizer_dir, tmp_path, kwargs, error, message):
    """A bad setting names its config key; a shard index outside the range is the caller's bug."""
    with pytest.raises(error, match=message):
        tokenize_shard(
            corpus, tokenizer_dir, tmp_path / "out", **{"max_length": MAX_LENGTH, "mode": "one_citation", **kwargs}
        )
    assert not (tmp_path / "out").exists()


def test_corpus_without_text_column(tokenizer_dir, tmp_path):
    path = tmp_path / "no_text.parquet"
    pq.write_table(pa.table({"pmid": [1, 2]}), path)
    with pytest.raises(InputError, match="no_text.parquet.*'text'"):
        tokenize_shard(path, tokenizer_dir, tmp_path / "out", 0, 1, mode="one_citation", max_length=MAX_LENGTH)


def test_manifest_sums_the_shards(corpus, tokenizer_dir, tmp_path):
    dirs, stats = _tokenize_all(corpus, tokenizer_dir, tmp_path, 3)
    manifest = write_manifest(dirs, tmp_path / "manifest.json")
    assert manifest == read_json(tmp_path / "manifest.json")
    assert [entry["sha256"] for entry in manifest["shards"]] == [s["sha256"] for s in stats]
    assert [entry["path"] for entry in manifest["shards"]] == [str(d) for d in dirs]
    assert manifest["totals"]["rows"] == len(TEXTS) == len(load_shards(dirs))
    assert manifest["totals"]["tokens"] == sum(s["tokens"] for s in stats)
    assert manifest["totals"]["truncated_tokens"] == sum(s["truncated_tokens"] for s in stats)


def test_manifest_rejects_missing_or_mixed_shards(corpus, tokenizer_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="stats.json"):
        write_manifest([tmp_path / "empty"], tmp_path / "m.json")
    paper = tmp_path / "paper"
    packed = tmp_path / "packed"
    tokenize_shard(corpus, tokenizer_dir, paper, 0, 2, max_length=MAX_LENGTH, mode="one_citation")
    tokenize_shard(corpus, tokenizer_dir, packed, 1, 2, max_length=MAX_LENGTH, mode="packed")
    with pytest.raises(InputError, match="mode"):
        write_manifest([paper, packed], tmp_path / "m.json")
    with pytest.raises(InputError, match="repeat"):
        write_manifest([paper, paper], tmp_path / "m.json")
    with pytest.raises(InputError, match=r"shard 1 of 2 missing"):  # a set of one of its two shards: a partial corpus
        write_manifest([paper], tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def test_stats_json_is_written_inside_the_shard(corpus, tokenizer_dir, tmp_path):
    stats = tokenize_shard(corpus, tokenizer_dir, tmp_path / "s", 0, 1, max_length=MAX_LENGTH, mode="one_citation")
    assert json.loads((tmp_path / "s" / "stats.json").read_text()) == stats
    assert set(stats) >= {"shard", "num_shards", "rows", "tokens", "truncated_tokens", "sha256"}
