"""Tokenise the corpus in deterministic shards, saved as Hugging Face datasets, plus a manifest over them.

Shard i of k holds the i-th contiguous slice of the corpus rows (np.array_split sizes), so the shards
partition the corpus and concatenating them in shard order gives the corpus order back.

Modes:
- `one_citation` (the paper's, paper_spec.md §2): one sequence per citation, `[CLS] text [SEP]` truncated to
  `max_length`; what truncation drops is counted in `truncated_tokens`.
- `packed`: every text's tokens, each document followed by [SEP], concatenated and cut into blocks of exactly
  `max_length` (`[CLS]` + max_length-2 tokens + `[SEP]`). The final incomplete block is dropped (as in
  HF's run_mlm `group_texts`) and its tokens are counted in `truncated_tokens`.

Columns: `input_ids` (int32) and `special_tokens_mask` (int8). No attention_mask / token_type_ids: the MLM
collator pads and builds the attention mask itself, and token types are all zero.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .config import ConfigError
from .io import InputError, atomic_path, read_json, write_json

BATCH_ROWS = 1000
STATS_NAME = "stats.json"
TOKENIZE_MODES = ("one_citation", "packed")  # tokenize.mode


def shard_features():
    """The shards' column types. `datasets` is imported where needed: the manifest job does without its ~2 s."""
    import datasets

    return datasets.Features(
        {
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "special_tokens_mask": datasets.Sequence(datasets.Value("int8")),
        }
    )


def shard_bounds(num_rows: int, shard: int, num_shards: int) -> tuple[int, int]:
    """[start, stop) of shard `shard`: the first `num_rows % num_shards` shards get one extra row."""
    base, extra = divmod(num_rows, num_shards)
    start = shard * base + min(shard, extra)
    return start, start + base + (1 if shard < extra else 0)


def tokenize_shard(
    corpus_parquet,
    tokenizer_dir,
    out_dir,
    shard: int,
    num_shards: int,
    *,
    max_length: int,
    mode: str,
) -> dict:
    """Tokenise shard `shard` of `num_shards` of the corpus' `text` column and save it to `out_dir`."""
    if mode not in TOKENIZE_MODES:
        raise ConfigError(
            f"invalid config value at 'tokenize.mode': {mode!r} is not one of {', '.join(TOKENIZE_MODES)}"
        )
    if not 0 <= shard < num_shards:  # a caller's bug: the workflow numbers the shards 0..num_shards-1
        raise ValueError(f"shard {shard} is outside 0..{num_shards - 1}")
    if max_length < 3:
        raise ConfigError(
            f"invalid config value at 'tokenize.max_length': {max_length} leaves no room for text "
            f"between [CLS] and [SEP]"
        )
    num_rows = _corpus_rows(corpus_parquet)
    if num_shards > num_rows:
        raise InputError(corpus_parquet, f"{num_shards} shards requested but the corpus has only {num_rows} rows")
    start, stop = shard_bounds(num_rows, shard, num_shards)
    texts = _read_texts(corpus_parquet, start, stop)
    tokenizer = _load_fast_tokenizer(tokenizer_dir)

    encode = _encode_one_citation if mode == "one_citation" else _encode_packed
    input_ids, special_mask, truncated = encode(tokenizer, texts, max_length)
    checksum = _checksum(input_ids)
    stats = {
        "shard": shard,
        "num_shards": num_shards,
        "mode": mode,
        "max_length": max_length,
        "corpus_rows": [start, stop],
        "rows": len(input_ids),
        "tokens": len(input_ids.values),
        "truncated_tokens": truncated,
        "sha256": checksum,
    }
    table = pa.table({"input_ids": input_ids, "special_tokens_mask": special_mask})
    import datasets

    datasets.disable_progress_bars()  # a bar per shard is noise in a job log
    with atomic_path(out_dir, is_dir=True, step="tokenize-shard") as tmp:
        # A content-derived fingerprint keeps state.json (and so the whole directory) identical across reruns.
        dataset = datasets.Dataset(
            datasets.table.InMemoryTable(table),
            info=datasets.DatasetInfo(features=shard_features()),
            fingerprint=checksum[:16],
        )
        dataset.save_to_disk(str(tmp), num_shards=1)
        write_json(tmp / STATS_NAME, stats)
    return stats


def _corpus_rows(corpus_parquet) -> int:
    try:
        metadata = pq.ParquetFile(corpus_parquet).metadata
    except (OSError, pa.ArrowInvalid) as err:
        raise InputError(corpus_parquet, f"cannot read as Parquet ({' '.join(str(err).split())})") from None
    if "text" not in metadata.schema.names:
        raise InputError(corpus_parquet, "has no 'text' column")
    return metadata.num_rows


def _read_texts(corpus_parquet, start: int, stop: int) -> list[str]:
    """Rows [start, stop) of the text column, reading only the row groups that overlap them."""
    parquet = pq.ParquetFile(corpus_parquet)
    groups, first_row, offset = [], None, 0
    for index in range(parquet.num_row_groups):
        size = parquet.metadata.row_group(index).num_rows
        if offset < stop and offset + size > start:
            groups.append(index)
            first_row = offset if first_row is None else first_row
        offset += size
    table = parquet.read_row_groups(groups, columns=["text"])
    return [text or "" for text in table.column("text").slice(start - first_row, stop - start).to_pylist()]


def _load_fast_tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except (OSError, ValueError) as err:
        raise InputError(tokenizer_dir, f"cannot load a tokenizer ({' '.join(str(err).split())[:200]})") from None
    if not tokenizer.is_fast:
        raise InputError(tokenizer_dir, "tokenizer is not a fast (Rust) tokenizer; batch tokenisation needs one")
    if tokenizer.cls_token_id is None or tokenizer.sep_token_id is None:
        raise InputError(tokenizer_dir, "tokenizer has no [CLS]/[SEP] tokens")
    return tokenizer


def _encode_one_citation(tokenizer, texts: list[str], max_length: int):
    """The paper's call, batched. The Rust encodings keep what truncation cut off in `.overflowing`
    (post-processed, so with their own [CLS]/[SEP]), which counts the dropped tokens without a second pass."""
    ids_parts, mask_parts, truncated = [], [], 0
    for begin in range(0, len(texts), BATCH_ROWS):
        encoded = tokenizer(
            texts[begin : begin + BATCH_ROWS],
            truncation=True,
            max_length=max_length,
            return_special_tokens_mask=True,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        ids_parts.append(pa.array(encoded["input_ids"], pa.list_(pa.int32())))
        mask_parts.append(pa.array(encoded["special_tokens_mask"], pa.list_(pa.int8())))
        overflow = (piece for encoding in encoded.encodings for piece in encoding.overflowing)
        truncated += sum(len(piece) - sum(piece.special_tokens_mask) for piece in overflow)
    return _concat(ids_parts, pa.int32()), _concat(mask_parts, pa.int8()), truncated


def _encode_packed(tokenizer, texts: list[str], max_length: int):
    """Concatenate documents (each followed by [SEP]) and cut [CLS] + body + [SEP] blocks of max_length."""
    body_length = max_length - 2
    special_ids = np.asarray(sorted(set(tokenizer.all_special_ids)), np.int32)
    blocks, carry = [], np.zeros(0, np.int32)
    for begin in range(0, len(texts), BATCH_ROWS):
        encoded = tokenizer(
            texts[begin : begin + BATCH_ROWS],
            add_special_tokens=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )
        stream = np.concatenate([carry, _join_with_separator(encoded["input_ids"], tokenizer.sep_token_id)])
        full = len(stream) // body_length * body_length
        blocks.append(stream[:full].reshape(-1, body_length))
        carry = stream[full:]
    body = np.concatenate(blocks) if blocks else np.zeros((0, body_length), np.int32)
    ids = np.hstack(
        [
            np.full((len(body), 1), tokenizer.cls_token_id, np.int32),
            body,
            np.full((len(body), 1), tokenizer.sep_token_id, np.int32),
        ]
    )
    special = np.isin(ids, special_ids).astype(np.int8)
    return _fixed_rows(ids, pa.int32()), _fixed_rows(special, pa.int8()), len(carry)


def _join_with_separator(token_lists: list[list[int]], sep_id: int) -> np.ndarray:
    lengths = np.fromiter((len(tokens) for tokens in token_lists), np.int64, len(token_lists))
    flat = pa.array(token_lists, pa.list_(pa.int32())).flatten().to_numpy(zero_copy_only=False)
    separators = np.cumsum(lengths + 1) - 1
    stream = np.full(int(lengths.sum()) + len(token_lists), sep_id, np.int32)
    is_token = np.ones(len(stream), bool)
    is_token[separators] = False
    stream[is_token] = flat
    return stream


def _fixed_rows(matrix: np.ndarray, value_type) -> pa.ListArray:
    offsets = pa.array(np.arange(len(matrix) + 1, dtype=np.int32) * matrix.shape[1])
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1), value_type))


def _concat(parts: list[pa.ListArray], value_type) -> pa.ListArray:
    if not parts:
        return pa.array([], pa.list_(value_type))
    return pa.concat_arrays(parts)


def _checksum(input_ids: pa.ListArray) -> str:
    """sha256 over the row lengths and the token ids, so equal content gives equal checksums whatever the chunking."""
    offsets = np.asarray(input_ids.offsets.to_numpy(), np.int64)
    values = np.asarray(input_ids.flatten().to_numpy(zero_copy_only=False), "<i4")
    digest = hashlib.sha256()
    digest.update(np.diff(offsets).astype("<i8").tobytes())
    digest.update(values.tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------- manifest


def write_manifest(shard_dirs: list, out_json) -> dict:
    """Collect every shard's stats.json into one manifest with totals; the shards must form one consistent set."""
    entries = [dict(_shard_stats(shard_dir), path=str(shard_dir)) for shard_dir in shard_dirs]
    _check_consistent(out_json, entries)
    manifest = {
        "shards": entries,
        "totals": {
            "shards": len(entries),
            "rows": sum(e["rows"] for e in entries),
            "tokens": sum(e["tokens"] for e in entries),
            "truncated_tokens": sum(e["truncated_tokens"] for e in entries),
            "sha256": hashlib.sha256("".join(e["sha256"] for e in entries).encode()).hexdigest(),
        },
    }
    write_json(out_json, manifest)
    return manifest


def _shard_stats(shard_dir) -> dict:
    path = Path(shard_dir) / STATS_NAME
    if not path.is_file():
        raise InputError(path, "missing: not a shard written by tokenize_shard")
    return read_json(path)


def _check_consistent(out_json, entries: list[dict]) -> None:
    if not entries:
        raise InputError(out_json, "no shards given")
    for key in ("num_shards", "mode", "max_length"):
        values = {entry[key] for entry in entries}
        if len(values) > 1:
            raise InputError(out_json, f"shards disagree on {key}: {sorted(values, key=str)}")
    indices = [entry["shard"] for entry in entries]
    if len(set(indices)) != len(indices):
        raise InputError(out_json, f"shard indices repeat: {indices}")
    total = entries[0]["num_shards"]
    missing = sorted(set(range(total)) - set(indices))
    if missing:
        raise InputError(
            out_json, f"shard {', '.join(map(str, missing))} of {total} missing: pre-training would see a part"
        )
