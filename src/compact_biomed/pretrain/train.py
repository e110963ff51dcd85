"""How a compact model is trained: data, Hugging Face Trainer, resumable checkpoints and the exported student.

`train_and_export(settings)` is what `compact_biomed.pretrain.run` runs in each process. Everything the library
already does well (bf16, torchrun multi-GPU, gradient accumulation, optimizer, schedule, clipping, checkpoint files)
is left to `Trainer`; this module adds only what the recipes need:
- a collator whose MLM masks depend on (seed, example indices) only, so an interrupted-and-resumed run sees exactly
  the masks of an uninterrupted one (the stock collator draws from the global RNG, and Trainer's dataloader
  prefetches one batch ahead of the RNG state it checkpoints);
- checkpoints holding the student (+ fit_dense) but never the frozen teacher, kept per run in a folder named by
  the content of the run's inputs (`run_dir`), so changed inputs start afresh and never resume an old run; resume
  from the newest COMPLETE checkpoint; a finished run is exported again from its last checkpoint, never trained on;
- per-term losses in the Trainer log, written to train_log.jsonl with the exported model and its model card.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from huggingface_hub import ModelCard, ModelCardData
from transformers import (
    AutoTokenizer,
    DataCollatorForLanguageModeling,
    Trainer,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
    set_seed,
)

from .. import IGNORE_INDEX, one_gpu
from ..base_models import hub_id, source_name
from ..config import ConfigError
from ..io import InputError, atomic_path, folder_digest, write_text
from ..shards import STATS_NAME
from . import Diverged, Settings, TrainSettings, recipes

FIT_DENSE_FILE = "fit_dense.safetensors"
RUN_FINGERPRINT_FILE = "run.json"
DIVERGED_FILE = "diverged.txt"  # in a run's folder: the line its divergence ended with (StopIfDiverged)
SHARD_COLUMNS = ("input_ids", "special_tokens_mask")
CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")
RUN_DIR_PREFIX = "run-"
# What from_pretrained reads from a model folder (weights, config, tokenizer files); hashed into the run's key.
MODEL_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.json", "*.txt", "*.model")

# Settings that change what is learned: a checkpoint_dir written with other values must not be resumed. Left out
# with the other speed settings: `compile`, the same computation (only dropout draws from inductor's own generator),
# and `packing`, the same computation on fewer rows (dropout drawn per row), so a resumed run may switch them.
FINGERPRINT_TRAIN_KEYS = (
    "max_steps",
    "global_batch_size",
    "learning_rate",
    "warmup_steps",
    "weight_decay",
    "lr_scheduler",
    "mlm_probability",
    "teacher_dropout",
    "max_grad_norm",
)


# ---------------------------------------------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Trainer: per-term logging, student-only checkpoints
# ---------------------------------------------------------------------------------------------------------------


class PretrainTrainer(Trainer):
    # the objective returns per-micro-batch means, so Trainer divides by the accumulation steps as usual
    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._term_names: list[str] | None = None
        self._term_sums: torch.Tensor | None = None  # on device: no host sync per step
        self._term_steps = 0.0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mark_selections_dynamic(inputs)
        outputs = model(**inputs)
        if model.training:
            self._accumulate_terms(outputs["terms"])
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def _accumulate_terms(self, terms: dict[str, torch.Tensor]) -> None:
        accumulation = self.current_gradient_accumulation_steps
        values = torch.stack([value.detach().float() for value in terms.values()]) / accumulation
        if self._term_sums is None:
            self._term_names, self._term_sums = list(terms), torch.zeros_like(values)
        self._term_sums += values
        self._term_steps += 1.0 / accumulation

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_sums is not None and self._term_steps > 0:
            means = self.accelerator.reduce(self._term_sums, reduction="mean") / self._term_steps
            logs.update({f"loss_{name}": value for name, value in zip(self._term_names, means.tolist())})
            self._term_sums.zero_()
            self._term_steps = 0.0
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """A checkpoint is a loadable HF directory of the student (+ fit_dense); the frozen teacher is not saved."""
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        objective = self.accelerator.unwrap_model(self.model)
        objective.student.save_pretrained(output_dir)
        if objective.fit_dense is not None:
            safetensors.torch.save_file(objective.fit_dense.state_dict(), os.path.join(output_dir, FIT_DENSE_FILE))
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        objective = self.accelerator.unwrap_model(model or self.model)
        saved = type(objective.student).from_pretrained(resume_from_checkpoint)
        objective.student.load_state_dict(saved.state_dict())
        if objective.fit_dense is not None:
            objective.fit_dense.load_state_dict(
                safetensors.torch.load_file(os.path.join(resume_from_checkpoint, FIT_DENSE_FILE))
            )


class StopIfDiverged(TrainerCallback):
    """Ends the run at the first logged loss that is not finite (its window's mean: one NaN step makes it NaN):
    the weights are NaN or soon will be, and every later step would spend GPU time on them. It also logs at every
    step that saves a checkpoint and at the last step, and the Trainer logs before it saves: no checkpoint and no
    export holds a step the check has not seen."""

    def __init__(self, model_name: str):
        self.model_name = model_name

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save or state.global_step >= state.max_steps:
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            message = (
                f"models.{self.model_name}: the loss logged at step {state.global_step} is {loss}: training diverged;"
                f" the checkpoints before it stay in {args.output_dir}, and a lower learning_rate or more"
                " warmup_steps starts a new run"
            )
            # every process writes it (atomically, the same line): torchrun may stop the others once one has raised
            try:
                write_text(Path(args.output_dir) / DIVERGED_FILE, message + "\n")
            except (OSError, InputError) as error:
                print(f"could not record the divergence for retries: {error}", flush=True)
            raise Diverged(message)


def check_not_diverged(run: Path) -> None:
    """A diverged run, retried, resumes its last checkpoint on the same batches and diverges at the same step: so a
    retry (Snakemake's retries, SLURM's requeue) stops at once, before any model loads."""
    marker = run / DIVERGED_FILE
    if marker.is_file():
        raise Diverged(
            f"{marker.read_text().strip()}. That was an earlier attempt of this run, so this one stopped at once: "
            f"delete {marker} to retry it anyway (from its last checkpoint, if any)"
        )


def is_complete_checkpoint(path: Path) -> bool:
    """Trainer writes trainer_state.json last; also require the weights, optimizer, scheduler and RNG states."""
    required = ("config.json", "optimizer.pt", "scheduler.pt")
    if not all((path / name).is_file() for name in required):
        return False
    if not any(path.glob("model*.safetensors")) or not any(path.glob("rng_state*.pth")):
        return False
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def checkpoint_dirs(checkpoint_dir: str | Path) -> list[Path]:
    """checkpoint-N directories, oldest first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and CHECKPOINT_RE.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.fullmatch(p.name).group(1)))


def latest_complete_checkpoint(checkpoint_dir: str | Path) -> str | None:
    complete = [p for p in checkpoint_dirs(checkpoint_dir) if is_complete_checkpoint(p)]
    return str(complete[-1]) if complete else None


def remove_incomplete_checkpoints(checkpoint_dir: str | Path) -> None:
    """A job killed while saving leaves a partial checkpoint-N; Trainer would later write into it or rotate it."""
    for path in checkpoint_dirs(checkpoint_dir):
        if not is_complete_checkpoint(path):
            shutil.rmtree(path, ignore_errors=True)


def shard_digest(shard_dir: str | Path) -> str:
    """The content checksum tokenize_shard recorded (also in the manifest), else the hash of the shard's files."""
    stats = Path(shard_dir) / STATS_NAME
    if stats.is_file():
        return json.loads(stats.read_text())["sha256"]
    return folder_digest(shard_dir, ("*.arrow", "dataset_info.json"))


def run_fingerprint(settings: Settings) -> dict:
    """What the trained weights depend on: the CONTENT of the teacher / start model and of the shards (in order),
    and the settings. Paths are left out: a moved folder still resumes, a changed file at the same path does not."""
    teacher_dir, start_dir = settings.teacher_dir, settings.start_dir
    return {
        "recipe": settings.recipe,
        "seed": settings.seed,
        "student": settings.student or {},
        "teacher": folder_digest(teacher_dir, MODEL_FILE_PATTERNS) if teacher_dir else None,
        "start": folder_digest(start_dir, MODEL_FILE_PATTERNS) if start_dir else None,
        "shards": [shard_digest(shard_dir) for shard_dir in settings.shard_dirs],
        **{key: getattr(settings.train, key) for key in FINGERPRINT_TRAIN_KEYS},
    }


def run_dir(checkpoint_dir: str | Path, fingerprint: dict) -> Path:
    """The run's own checkpoint folder, named by its fingerprint's hash."""
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    return Path(checkpoint_dir) / f"{RUN_DIR_PREFIX}{key}"


def open_run_dir(checkpoint_dir: str | Path, fingerprint: dict) -> Path:
    """Create the run's checkpoint folder (with its fingerprint) if new, and say in the log when the inputs or
    settings changed since an earlier run. The earlier runs' checkpoints are left as they are: they are resumed
    again if their inputs come back, and only the user deletes them."""
    run = run_dir(checkpoint_dir, fingerprint)
    path = run / RUN_FINGERPRINT_FILE
    if path.is_file():
        return run
    if checkpoint_dirs(checkpoint_dir):
        print(
            f"{checkpoint_dir} holds checkpoints of an earlier version, which did not record the content of their "
            f"inputs: they are not resumed and are left as they are",
            flush=True,
        )
    others = sorted(Path(checkpoint_dir).glob(f"{RUN_DIR_PREFIX}*/{RUN_FINGERPRINT_FILE}"), key=os.path.getmtime)
    if others:
        previous = json.loads(others[-1].read_text())
        changed = sorted(k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k))
        print(
            f"inputs or settings changed since the run in {others[-1].parent} ({', '.join(changed)}): starting "
            f"afresh in {run}; the earlier run's checkpoints are kept (delete them to free the disk)",
            flush=True,
        )
    run.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
    return run


def finished_at(checkpoint: str | None, max_steps: int) -> bool:
    """Whether `checkpoint` holds the end of the run: Trainer would train one step past it (`steps: 41` of 40)."""
    if checkpoint is None:
        return False
    return json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"] >= max_steps


# ---------------------------------------------------------------------------------------------------------------
# Training arguments
# ---------------------------------------------------------------------------------------------------------------


def gradient_accumulation_steps(global_batch_size: int, per_device_batch_size: int, world_size: int) -> int:
    per_step = per_device_batch_size * world_size
    if global_batch_size % per_step:
        raise ConfigError(
            f"global_batch_size {global_batch_size} is not a multiple of per_device_batch_size "
            f"{per_device_batch_size} x {world_size} process(es)"
        )
    return global_batch_size // per_step


def precision_flags(precision: str) -> dict:
    """ "auto" = bf16 on a CUDA device that supports it, else fp32 (the official scripts trained in fp32, spec §3)."""
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}; use auto, bf16, fp16 or fp32")
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def training_arguments(train: TrainSettings, checkpoint_dir: str, seed: int) -> TrainingArguments:
    accumulation = gradient_accumulation_steps(train.global_batch_size, train.per_device_batch_size, process_count())
    save_steps = train.save_steps or 0  # 0 / None: no intermediate checkpoint, hence no resume
    checkpointing = {"save_strategy": "steps", "save_steps": save_steps} if save_steps else {"save_strategy": "no"}
    precision = precision_flags(train.precision)
    pinned = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=checkpoint_dir,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        logging_strategy="steps",
        logging_steps=train.logging_steps,
        # on, the Trainer reads every micro-batch's loss back to test it for NaN: a host sync that idles the GPU,
        # for a log that then hides the NaN (the weights take its step either way). Off, a diverged run logs NaN and
        # stops (StopIfDiverged). fp16 keeps it: its GradScaler skips an overflowing step (and syncs anyway)
        logging_nan_inf_filter=precision["fp16"],
        save_total_limit=train.save_total_limit,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=train.dataloader_workers,
        dataloader_pin_memory=pinned,
        # batches copied to the GPU from pinned memory without the host waiting for the copy (and so for the step)
        accelerator_config={"non_blocking": pinned},
        # one kernel for all parameters (transformers' default on torch >= 2.8). No TF32: under bf16 autocast no
        # matrix product is left in fp32, and a run set to fp32 asked for fp32
        optim="adamw_torch_fused",
        remove_unused_columns=False,  # the collator gets input_ids + special_tokens_mask (spec §2 pitfall)
        ddp_find_unused_parameters=False,  # every student parameter is used at every step
        report_to="none",
        disable_tqdm=True,
        **checkpointing,
        **precision,
    )
    return one_gpu(args)


def compile_objective(objective: torch.nn.Module) -> None:
    """torch.compile the objective's forward (and so its backward) in place: the module, its state_dict and the
    checkpoints stay as they are. Not TrainingArguments(torch_compile=True): that also turns TF32 on under bf16
    (transformers' training_args), against the no-TF32 choice in training_arguments.

    Shapes vary by batch (sequence length, masked positions): torch.compile's automatic dynamic shapes
    (dynamic=None) compile the first batch static and, at the first batch of other sizes, once more with those
    sizes symbolic. No length buckets (padding each batch on to a multiple of 64): TinyBioBERT's att and rep
    terms and CompactBioBERT's attention KL average over padding too (spec §1.3, §1.4), so their loss would change.
    The MLM heads and the losses select masked rows / real tokens by the collator's indices (`selections`), whose
    sizes are inputs' sizes, symbolic from the first compilation (mark_selections_dynamic): DistilBioBERT's objective
    is one graph. Selected by boolean masks, as a batch without the indices still is, the sizes come from the data:
    traced too (below), else each such index breaks the graph (DistilBioBERT: 15 graphs, 2.9x the time to compile
    on a CPU); even so the losses' checks for an empty selection (`if rows == 0`) split it at each loss.
    """
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    install_output_hooks(objective)
    objective.compile()


def install_output_hooks(objective: recipes.PretrainingObjective) -> None:
    """transformers installs the hooks that capture hidden states and attention maps at the first forward that asks
    for them, under a lock torch.compile cannot trace. A step compiled before any eager one (a hand-set micro-batch,
    or `auto` off CUDA) broke into graphs at each model (CompactBioBERT: 14 breaks, 7 graphs); one compiled after the
    eager micro-batch probe (`auto` on CUDA) was one graph. With the hooks installed here, the step is one graph
    either way (a transformers without this function installs nothing here: the breaks come back)."""
    from transformers.utils import output_capturing

    install = getattr(output_capturing, "maybe_install_capturing_hooks", None)
    if install is None or not (recipes.needs_hidden_states(objective.recipe) or objective.recipe.attention_maps):
        return
    for model in (objective.student, objective.teacher):
        if model is not None:
            install(model.base_model)


# ---------------------------------------------------------------------------------------------------------------
# Micro-batch: the largest divisor of each process's share of the global batch that fits the device
# ---------------------------------------------------------------------------------------------------------------

MEMORY_HEADROOM = 0.9  # share of the device's memory a step may take: the allocator fragments the rest
# The probe runs eagerly, and a compiled step can hold more: CompactBioBERT's held 48.7 GiB against 39.9 eager on an
# H100 (1.22x; benchmarks/results/h100-pretrain-compiled-four.txt); the three others there, and DistilBioBERT
# (h100-pretrain-distil-compile.txt), held less than eager (BioTinyBERT has not been compiled on a GPU).
COMPILED_MEMORY_FACTOR = 1.25


def micro_batch_candidates(global_batch_size: int, world_size: int) -> list[int]:
    """Every per-device batch that keeps the global batch exact by accumulation, smallest first."""
    if global_batch_size % world_size:
        raise ConfigError(f"global_batch_size {global_batch_size} is not a multiple of {world_size} process(es)")
    share = global_batch_size // world_size
    return [n for n in range(1, share + 1) if share % n == 0]


def largest_fitting(candidates: list[int], fits: Callable[[int], bool]) -> int:
    """The largest candidate that fits; `fits` is monotone. The largest is tried first (what a large GPU takes),
    then a binary search, so a probe costs one step, or a few on a small GPU."""
    if fits(candidates[-1]):
        return candidates[-1]
    low, high, best = 0, len(candidates) - 2, None
    while low <= high:
        middle = (low + high) // 2
        if fits(candidates[middle]):
            best, low = candidates[middle], middle + 1
        else:
            high = middle - 1
    if best is None:
        raise RuntimeError(f"not even a micro-batch of {candidates[0]} fits the device's memory")
    return best


@dataclass(frozen=True)
class ProbeBatch:
    """The worst batch the data can produce: every sequence as long as the longest in the shards."""

    max_length: int
    vocab_size: int
    mlm_probability: float
    autocast_dtype: torch.dtype | None  # the Trainer's mixed precision, None in fp32

    def tensors(self, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)  # its own generator: the global RNG stays untouched
        shape = (batch_size, self.max_length)
        input_ids = torch.randint(0, self.vocab_size, shape, generator=generator)
        masked = torch.rand(shape, generator=generator) < self.mlm_probability
        labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
        return {
            "input_ids": input_ids.to(device),
            "attention_mask": torch.ones_like(input_ids).to(device),
            "labels": labels.to(device),
        }


def probe_step(objective: torch.nn.Module, batch_size: int, probe: ProbeBatch) -> None:
    """One forward + backward of the worst batch, leaving no trace: RNG states forked, gradients dropped."""
    device = next(objective.parameters()).device
    was_training = objective.training
    objective.train()  # dropout masks are part of a training step's memory
    try:
        with (
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
            torch.autocast(device.type, dtype=probe.autocast_dtype, enabled=probe.autocast_dtype is not None),
        ):
            objective(**probe.tensors(batch_size, device))["loss"].backward()
    finally:
        objective.zero_grad(set_to_none=True)
        objective.train(was_training)


def optimizer_state_bytes(objective: torch.nn.Module) -> int:
    """AdamW's two fp32 moments per trainable parameter, allocated after the probe by the first step."""
    return 2 * 4 * sum(p.numel() for p in objective.parameters() if p.requires_grad)


def step_fits(probe_peak: int, optimizer_bytes: int, budget: float, compiled: bool) -> bool:
    """Whether a step whose eager probe peaked at `probe_peak` bytes, plus the optimizer's state, fits `budget`;
    a compiled step with COMPILED_MEMORY_FACTOR's margin."""
    return probe_peak * (COMPILED_MEMORY_FACTOR if compiled else 1.0) + optimizer_bytes <= budget


def fits_device_memory(objective: torch.nn.Module, batch_size: int, probe: ProbeBatch, compiled: bool = False) -> bool:
    """Whether a training step of `batch_size` worst-case sequences fits the CUDA device's memory (measured, not
    estimated; `compiled`: the step will be torch.compile's). Off CUDA there is nothing to probe: host memory is not
    the limit of a device, so all fits."""
    device = next(objective.parameters()).device
    if device.type != "cuda":
        return True
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    budget = MEMORY_HEADROOM * (torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device))
    try:
        probe_step(objective, batch_size, probe)
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()
    return step_fits(torch.cuda.max_memory_allocated(device), optimizer_state_bytes(objective), budget, compiled)


def longest_sequence(rows) -> int:
    """The longest tokenised sequence, from the Arrow offsets alone (no row is read)."""
    import pyarrow.compute as pc

    return int(pc.max(pc.list_value_length(rows.data.column("input_ids"))).as_py())


def autocast_dtype(precision: dict) -> torch.dtype | None:
    return torch.bfloat16 if precision["bf16"] else torch.float16 if precision["fp16"] else None


def check_batch_sizes(train: TrainSettings) -> None:
    """The global batch splits over the processes, and into the hand-set micro-batches (else a ConfigError)."""
    if train.per_device_batch_size == "auto":
        micro_batch_candidates(train.global_batch_size, process_count())
    else:
        gradient_accumulation_steps(train.global_batch_size, train.per_device_batch_size, process_count())


def choose_micro_batch(train: TrainSettings, objective: torch.nn.Module, max_length: int, vocab_size: int) -> int:
    """The per-device batch: as configured, or for "auto" the largest divisor of the process's share of the global
    batch whose training step fits the device (`fits_device_memory`: a measured CUDA step).
    The objective moves to the training device first, where the Trainer would put it anyway."""
    if train.per_device_batch_size != "auto":
        return train.per_device_batch_size
    candidates = micro_batch_candidates(train.global_batch_size, process_count())
    if torch.cuda.is_available():
        objective.to(torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))))
    probe = ProbeBatch(max_length, vocab_size, train.mlm_probability, autocast_dtype(precision_flags(train.precision)))
    chosen = largest_fitting(candidates, lambda n: fits_device_memory(objective, n, probe, train.compile))
    return agree_across_processes(chosen)


def process_count() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def agree_across_processes(batch_size: int) -> int:
    """Every torchrun worker takes the smallest choice (a divisor of the same share), so all accumulate alike."""
    if process_count() == 1:
        return batch_size
    from accelerate import PartialState

    state = PartialState()  # the process group TrainingArguments would start anyway
    value = torch.tensor(batch_size, device=state.device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
    return int(value.item())


# ---------------------------------------------------------------------------------------------------------------
# Export
# ---------------------------------------------------------------------------------------------------------------


def log_rows(log_history: list[dict], term_names: list[str]) -> list[dict]:
    """One row per logging step: step, lr, total loss, each loss term (unweighted), grad norm, epoch."""
    rows = []
    for entry in log_history:
        if "loss" not in entry:
            continue
        row = {"step": entry["step"], "lr": entry.get("learning_rate"), "loss": entry["loss"]}
        row.update({f"loss_{name}": entry[f"loss_{name}"] for name in term_names if f"loss_{name}" in entry})
        row.update({k: entry[k] for k in ("grad_norm", "epoch") if k in entry})
        rows.append(row)
    return rows


def model_card(
    recipe: recipes.Recipe,
    settings: Settings,
    train: TrainSettings,
    steps: int,
    parameters: int,
    final: dict,
    student_config,
    micro_batch_origin: str,
) -> ModelCard:
    """The exported model's README.md. Its metadata names a `base_model` only when the teacher or start model came
    from the hub: the hub rejects a local path there (random demo models, user folders)."""
    weights = recipe.loss_weights
    formula = " + ".join(f"{w:g}*{name}" for name, w in weights.items())
    distilled = recipe.kind == "distillation"
    base_dir = settings.teacher_dir if distilled else settings.start_dir
    source = source_name(base_dir)
    custom = {
        "recipe": recipe.name,
        ("teacher" if distilled else "start_model"): source,
        "steps": steps,
        "global_batch_size": train.global_batch_size,
        "per_device_batch_size": train.per_device_batch_size,
        "learning_rate": train.learning_rate,
        "data": list(settings.shard_dirs),
        "losses": dict(weights),
        "temperature": recipe.temperature if distilled else None,
        "teacher_dropout": bool(train.teacher_dropout) if distilled else None,
        "parameters": parameters,
    }
    data = ModelCardData(
        base_model=hub_id(base_dir),
        library_name="transformers",
        pipeline_tag="fill-mask",
        tags=[
            "compact-biomed",
            "biomedical",
            "fill-mask",
            recipe.name,
            "knowledge-distillation" if distilled else "continual-pretraining",
        ],
        **{k: v for k, v in custom.items() if v is not None},
    )
    shape = (
        f"{student_config.model_type}, {student_config.num_hidden_layers} layers, hidden "
        f"{getattr(student_config, 'hidden_size', getattr(student_config, 'dim', '?'))}, "
        f"vocabulary {student_config.vocab_size}"
    )
    final_text = ", ".join(f"{k} {v:.4f}" for k, v in final.items() if isinstance(v, float)) or "not logged"
    facts = [
        f"Recipe `{recipe.name}`: {recipe.summary}",
        f"{'Teacher' if distilled else 'Start model'}: `{source}`",
        f"Student: {shape}; {parameters:,} parameters",
        f"Loss: {formula}",
        (
            f"{steps} optimizer steps, global batch {train.global_batch_size}, peak learning rate "
            f"{train.learning_rate}, {train.lr_scheduler} schedule, warmup {train.warmup_steps}, weight decay "
            f"{train.weight_decay}, MLM probability {train.mlm_probability}"
        ),
        (
            f"Per-device micro-batch {train.per_device_batch_size}, accumulated to the global batch "
            f"({micro_batch_origin})"
        ),
    ]
    if distilled:
        mode = "on (as the official scripts)" if train.teacher_dropout else "off (teacher in eval mode)"
        facts.append(f"Teacher dropout during distillation: {mode}")
    facts.append(f"Final logged losses: {final_text}")
    return ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n"
        f"# {settings.model_name or recipe.name}\n\n"
        'Trained by compact-biomed, reproducing Rohanian et al. 2022, "On the Effectiveness of Compact Biomedical '
        'Transformers" (arXiv 2209.03182).\n\n'
        + "".join(f"- {fact}\n" for fact in facts)
        + "\n`train_log.jsonl` holds one line per logging step (unweighted loss terms).\n"
    )


def export(objective: recipes.PretrainingObjective, tokenizer, out_dir: str, card: ModelCard, rows: list[dict]) -> None:
    """Write the student alone (no teacher, no fit_dense), its tokenizer, model card and log; all or nothing."""
    with atomic_path(out_dir, is_dir=True, step="pretrain") as tmp:
        objective.student.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        card.save(tmp / "README.md")
        (tmp / "train_log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------


@contextmanager
def config_key(key: str):
    """A problem of a config value found while the run is built: one ConfigError naming the key."""
    try:
        yield
    except ConfigError as error:
        raise ConfigError(f"invalid config value at '{key}': {error}") from None


def build_objective(settings: Settings, recipe: recipes.Recipe):
    """The objective module and the tokenizer of its vocabulary. Seeds first: fresh weights are random."""
    row = f"models.{settings.model_name}"
    set_seed(settings.seed)
    if recipe.kind == "distillation":
        if not settings.teacher_dir:
            raise ConfigError(
                f"invalid config value at '{row}.recipe': recipe {recipe.name!r} distils a teacher, "
                f"but no teacher folder was given"
            )
        teacher = recipes.load_teacher(settings.teacher_dir, recipe)
        with config_key(f"{row}.student"):
            model = recipes.build_student(recipe, teacher, settings.student)
            objective = recipes.PretrainingObjective(recipe, model, teacher, settings.train.teacher_dropout)
        return objective, AutoTokenizer.from_pretrained(settings.teacher_dir)
    if not settings.start_dir:
        raise ConfigError(
            f"invalid config value at '{row}.recipe': recipe {recipe.name!r} continues a start model, "
            f"but no start model folder was given"
        )
    if settings.student:
        raise ConfigError(
            f"invalid config value at '{row}.student': recipe {recipe.name!r} trains the start "
            f"model as is; student overrides {settings.student} do not apply"
        )
    model = recipes.load_start_model(settings.start_dir, recipe)
    return recipes.PretrainingObjective(recipe, model), AutoTokenizer.from_pretrained(settings.start_dir)


def use_packing(train: TrainSettings, objective: recipes.PretrainingObjective) -> bool:
    """The train setting `packing` where the recipe and the models allow it (recipes.packs_rows); a line where not."""
    allowed = recipes.packs_rows(objective.recipe, objective.model_types())
    if train.packing and not allowed:
        where = f"recipe {objective.recipe.name} on {'/'.join(objective.model_types())}"
        print(f"packing: off for {where} (see recipes.packs_rows)", flush=True)
    return train.packing and allowed


def masking_collator(
    tokenizer, train: TrainSettings, objective: recipes.PretrainingObjective, seed: int, device: torch.device
) -> ReproducibleMaskingCollator:
    """The collator for `train` on the Trainer's `device` (TrainingArguments.device; the model may still be on the
    CPU when it is built): packed rows where allowed, their count rounded up on CUDA (PACKED_ROW_MULTIPLE)."""
    return ReproducibleMaskingCollator(
        tokenizer,
        train.mlm_probability,
        seed,
        packing=use_packing(train, objective),
        row_multiple=PACKED_ROW_MULTIPLE if device.type == "cuda" else 1,
    )


def train_and_export(settings: Settings) -> dict:
    """Pre-train one compact model in this process (alone, or as one torchrun worker) and export it to
    `settings.out_dir`; returns a summary.

    Distillation recipes (distilbiobert, compactbiobert, tinybiobert) need `teacher_dir`, `continual_mlm` needs
    `start_dir`; `student` overrides a distillation student's architecture. Checkpoints go to
    `checkpoint_dir/run-<key>/`, the key hashing the inputs' content and the settings; the run resumes from the
    newest complete one found there.
    """
    row = f"models.{settings.model_name}"
    with config_key(f"{row}.recipe"):
        spec = recipes.get_recipe(settings.recipe)
    with config_key(f"{row}.train"):
        check_batch_sizes(settings.train)  # before anything loads
    rows = load_shards(settings.shard_dirs)
    fingerprint = run_fingerprint(settings)
    run = run_dir(settings.checkpoint_dir, fingerprint)  # the run's folder, named by its inputs' content
    check_not_diverged(run)
    objective, tokenizer = build_objective(settings, spec)
    if len(tokenizer) > objective.student.config.vocab_size:
        raise InputError(
            settings.teacher_dir or settings.start_dir,
            f"tokenizer has {len(tokenizer)} tokens but the model only {objective.student.config.vocab_size}",
        )
    micro_batch = choose_micro_batch(settings.train, objective, longest_sequence(rows), len(tokenizer))
    origin = "the largest that fits the device" if settings.train.per_device_batch_size == "auto" else "set by hand"
    train = dataclasses.replace(settings.train, per_device_batch_size=micro_batch)
    args = training_arguments(train, settings.checkpoint_dir, settings.seed)
    print(
        f"per-device batch {micro_batch} x {args.gradient_accumulation_steps} accumulation step(s) x "
        f"{args.world_size} process(es) = global batch {train.global_batch_size}",
        flush=True,
    )

    args.output_dir = str(run)
    if args.should_save:
        open_run_dir(settings.checkpoint_dir, fingerprint)
        remove_incomplete_checkpoints(args.output_dir)
    resume_from = latest_complete_checkpoint(args.output_dir)

    if train.compile:
        compile_objective(objective)  # after the micro-batch probe, which runs eagerly
    trainer = PretrainTrainer(
        model=objective,
        args=args,
        train_dataset=IndexedExamples(rows),
        processing_class=tokenizer,
        data_collator=masking_collator(tokenizer, train, objective, settings.seed, args.device),
        callbacks=[StopIfDiverged(settings.model_name)],
    )
    if finished_at(resume_from, train.max_steps):
        print(f"{resume_from} is the finished run's last checkpoint: exporting it, no further training", flush=True)
        trainer._load_from_checkpoint(resume_from)
        trainer.state = TrainerState.load_from_json(os.path.join(resume_from, "trainer_state.json"))
    else:
        print(
            f"resuming from {resume_from}" if resume_from else "no complete checkpoint: starting at step 0", flush=True
        )
        trainer.train(resume_from_checkpoint=resume_from)

    history = log_rows(trainer.state.log_history, list(spec.loss_weights))
    final = {k: v for k, v in (history[-1] if history else {}).items() if k == "loss" or k.startswith("loss_")}
    summary = {
        "recipe": settings.recipe,
        "model_name": settings.model_name,
        "steps": trainer.state.global_step,
        "global_batch_size": train.global_batch_size,
        "per_device_batch_size": micro_batch,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": args.world_size,
        "final_losses": final,
        "parameters": objective.student.num_parameters(),
        "resumed_from": resume_from,
        "out_dir": settings.out_dir,
    }
    if trainer.is_world_process_zero():
        card = model_card(
            spec,
            settings,
            train,
            trainer.state.global_step,
            summary["parameters"],
            final,
            objective.student.config,
            origin,
        )
        export(objective, tokenizer, settings.out_dir, card, history)
    trainer.accelerator.wait_for_everyone()
    return summary
