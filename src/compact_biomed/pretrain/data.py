"""Pre-training data: the tokenised shards, and the collator that masks them reproducibly (and packs them).

The MLM masks depend on (seed, example indices) only, so an interrupted-and-resumed run sees exactly the masks of an
uninterrupted one (the stock collator draws from the global RNG, and Trainer's dataloader prefetches one batch ahead
of the RNG state it checkpoints).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import DataCollatorForLanguageModeling

from .. import IGNORE_INDEX
from ..io import InputError
from . import recipes

SHARD_COLUMNS = ("input_ids", "special_tokens_mask")


def load_shards(shard_dirs: list[str]):
    """Concatenate tokenised shards saved with `Dataset.save_to_disk` (columns input_ids, special_tokens_mask)."""
    import datasets

    if not shard_dirs:
        raise InputError("shard_dirs", "no tokenised shard given")
    parts = []
    for shard_dir in shard_dirs:
        part = datasets.load_from_disk(str(shard_dir))
        missing = [c for c in SHARD_COLUMNS if c not in part.column_names]
        if missing:
            raise InputError(shard_dir, f"shard lacks column(s) {', '.join(missing)}")
        parts.append(part.select_columns(list(SHARD_COLUMNS)))
    return datasets.concatenate_datasets(parts)


class IndexedExamples(torch.utils.data.Dataset):
    """The shards' rows, each tagged with its index so that the collator can derive the masking seed from it."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.__getitems__([index])[0]

    def __getitems__(self, indices):  # one Arrow read per batch instead of one per example
        columns = self.rows[list(indices)]
        return [
            {"input_ids": ids, "special_tokens_mask": special, "example_index": int(index)}
            for ids, special, index in zip(columns["input_ids"], columns["special_tokens_mask"], indices)
        ]


class ReproducibleMaskingCollator(DataCollatorForLanguageModeling):
    """HF's MLM collator (15%, 80/10/10, dynamic padding) seeded per batch from (seed, example indices).

    Masks therefore do not depend on when or in which process the batch is collated (prefetching, dataloader
    workers, resume), and the global RNG, which drives dropout and which Trainer checkpoints, is left untouched.
    An example meets new masks in every epoch because it meets a different batch. With `packing` the masked
    citations come packed several to a row (pack_rows).
    """

    def __init__(self, tokenizer, mlm_probability: float, mask_seed: int, packing: bool = False, row_multiple: int = 1):
        super().__init__(tokenizer=tokenizer, mlm=True, mlm_probability=mlm_probability)
        self.mask_seed = mask_seed
        if packing and tokenizer.padding_side != "right":
            raise ValueError("packing reads each citation from the start of its row: it needs right padding")
        self.packing = packing  # the train setting
        self.row_multiple = row_multiple  # pack_rows'

    def masking_generator(self, indices: list[int]) -> torch.Generator:
        entropy = np.random.SeedSequence([self.mask_seed, *indices]).generate_state(2, dtype=np.uint32)
        return torch.Generator().manual_seed(int(entropy[0]) << 32 | int(entropy[1]))

    def torch_call(self, examples):
        self.generator = self.masking_generator([example.pop("example_index") for example in examples])
        if self.tokenizer.padding_side != "right":
            batch = super().torch_call(examples)
        else:  # HF's own masking on tensors padded as tokenizer.pad pads them, 6-7x faster (bench_pretrain.py)
            batch = pad_right(examples, self.tokenizer.pad_token_id)
            batch["input_ids"], batch["labels"] = self.torch_mask_tokens(
                batch["input_ids"], special_tokens_mask=batch.pop("special_tokens_mask")
            )
        # only what the objective takes (spec §2: no token_type_ids, no special_tokens_mask)
        batch = {key: batch[key] for key in ("input_ids", "attention_mask", "labels")}
        if self.packing:
            batch = pack_rows(batch, self.tokenizer.pad_token_id, self.row_multiple)
        return {**batch, **selections(batch)}


def selections(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The flat indices of a batch's masked and of its real positions, for the objective to select rows with (the
    same rows, in the same order, as the boolean masks): computed here, on the host, they cost the GPU no sync.
    With the masks on a GPU, each selection waited for all work queued before it (its count sizes its result)."""
    return {
        "masked_index": recipes.masked_positions(batch["labels"]).flatten().nonzero().squeeze(1),
        "token_index": batch["attention_mask"].flatten().nonzero().squeeze(1),
    }


def mark_selections_dynamic(batch: dict[str, torch.Tensor]) -> None:
    """The selections' sizes change with every batch: a compiled step takes them as symbols from its first
    compilation. Where the batch's shape stays the same (padded batches at the paper's shapes: nearly always 192 x
    256), that saves compiling once more at the second batch; where it changes too, the recompilation comes anyway."""
    for key in ("masked_index", "token_index"):
        if key in batch:
            torch._dynamo.maybe_mark_dynamic(batch[key], 0)


def first_fit(lengths: list[int], width: int) -> list[tuple[int, int]]:
    """Each citation's (row, start) when packed into rows of `width` positions, longest first, each into the first
    row with room for it (first-fit decreasing); ties keep the batch's order."""
    room, places = [], [(0, 0)] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        row = next((r for r, free in enumerate(room) if free >= lengths[i]), len(room))
        if row == len(room):
            room.append(width)
        places[i] = (row, width - room[row])
        room[row] -= lengths[i]
    return places


# Packed batches' row counts on CUDA: rounded up to a multiple of this with empty rows, so that a run meets a few
# shapes, not a new one per batch. cuDNN's attention builds an execution plan per new shape (5.5 ms of CPU per call
# on an H100, benchmarks/results/h100-length-split-probe.txt); packed rows of every count ran at 0.68x the padded
# batch there (h100-pretrain-distil-packing.txt).
PACKED_ROW_MULTIPLE = 8


def pack_rows(batch: dict[str, torch.Tensor], pad_token_id: int, row_multiple: int = 1) -> dict[str, torch.Tensor]:
    """A masked, right-padded batch with its citations packed several to a row of the same width (first_fit), so
    that less padding is computed: `segments` numbers each row's citations from 1 (0: padding) and `position_ids`
    restart at each, so that each citation attends to itself only (recipes.segment_mask) with its own positions;
    `attention_mask` marks the real positions. The masks are the unpacked batch's: they were drawn before. Empty
    rows (all padding) round the row count up to a multiple of `row_multiple`, never past the padded batch's; no
    loss term reads them."""
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    width = batch["input_ids"].shape[1]
    places = first_fit(lengths, width)
    rows = 1 + max(row for row, _ in places)
    shape = (min(-(-rows // row_multiple) * row_multiple, len(lengths)), width)
    packed = {
        "input_ids": torch.full(shape, pad_token_id, dtype=batch["input_ids"].dtype),
        "attention_mask": torch.zeros(shape, dtype=batch["attention_mask"].dtype),
        "labels": torch.full(shape, IGNORE_INDEX, dtype=batch["labels"].dtype),
        "position_ids": torch.zeros(shape, dtype=torch.long),
        "segments": torch.zeros(shape, dtype=torch.long),
    }
    for i, ((row, start), length) in enumerate(zip(places, lengths)):
        span = slice(start, start + length)
        packed["input_ids"][row, span] = batch["input_ids"][i, :length]
        packed["labels"][row, span] = batch["labels"][i, :length]
        packed["attention_mask"][row, span] = 1
        packed["position_ids"][row, span] = torch.arange(length)
        packed["segments"][row, span] = 1 + int(packed["segments"][row].max())
    return packed


def pad_right(examples: list[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """`tokenizer.pad(examples, return_tensors="pt")` for input_ids + special_tokens_mask, through numpy: pad id,
    attention 0 and special-token flag 1 after each sequence. The tokenizer converts nested lists element by element,
    which took 95% of a 192-sequence batch's collation."""
    lengths = [len(example["input_ids"]) for example in examples]
    shape = (len(examples), max(lengths))
    input_ids = np.full(shape, pad_token_id, dtype=np.int64)
    special = np.ones(shape, dtype=np.int64)
    attention = np.zeros(shape, dtype=np.int64)
    for row, (example, length) in enumerate(zip(examples, lengths)):
        input_ids[row, :length] = example["input_ids"]
        special[row, :length] = example["special_tokens_mask"]
        attention[row, :length] = 1
    return {
        "input_ids": torch.from_numpy(input_ids),
        "attention_mask": torch.from_numpy(attention),
        "special_tokens_mask": torch.from_numpy(special),
    }


def longest_sequence(rows) -> int:
    """The longest tokenised sequence, from the Arrow offsets alone (no row is read)."""
    import pyarrow.compute as pc

    return int(pc.max(pc.list_value_length(rows.data.column("input_ids"))).as_py())
