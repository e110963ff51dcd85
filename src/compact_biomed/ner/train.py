"""Training and prediction on the Hugging Face Trainer: the paper's settings (spec §4.1), random batches as the
official code, `DataCollatorForTokenClassification`."""

from __future__ import annotations

import math
import tempfile
import time

import numpy as np
import torch
from transformers import (
    DataCollatorForTokenClassification,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

from .. import IGNORE_INDEX, one_gpu
from ..pretrain.micro_batch import precision_flags
from .encode import EncodedSplit

# Fewer distinct batch shapes: fresh GPU jobs of the old loop ran 3.1x faster than with exact padding (issue 14's
# H200 probe). On an H100 each new shape costs cuDNN's attention a new plan, about 5 ms a call
# (benchmarks/results/h100-length-split-probe.txt).
CUDA_PAD_MULTIPLE = 64


class ProgressLog(TrainerCallback):
    """Progress in the job's log: loss, epoch and samples/s every `logging_steps`, and each epoch's rate."""

    def __init__(self, samples_per_epoch: int, batch_size: int):
        self.samples_per_epoch, self.batch_size = samples_per_epoch, batch_size
        self.epoch_rates: list[float] = []

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.epoch_started = time.perf_counter()

    def on_epoch_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the GPU's queued steps belong to this epoch
        self.epoch_rates.append(round(self.samples_per_epoch / (time.perf_counter() - self.epoch_started), 2))
        print(f"epoch {len(self.epoch_rates)}: {self.epoch_rates[-1]} samples/s", flush=True)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            rate = state.global_step * self.batch_size / (time.perf_counter() - self.started)
            print(
                f"step {state.global_step}/{state.max_steps} epoch {state.epoch:.2f} loss {logs['loss']:.4f} "
                f"lr {logs.get('learning_rate', 0):.3g} {rate:.1f} samples/s",
                flush=True,
            )


def window_features(split: EncodedSplit, with_labels: bool) -> list[dict]:
    """The windows as the collator's features (plain lists: what tokenizer.pad expects)."""
    if not with_labels:
        return [{"input_ids": ids.tolist()} for ids in split.input_ids]
    return [
        {"input_ids": ids.tolist(), "labels": labels.tolist()}
        for ids, labels in zip(split.input_ids, split.labels)
        # A window without any trained label (e.g. only zero-piece words) would give a NaN loss.
        if (labels != IGNORE_INDEX).any()
    ]


def pad_multiple(multiple: int | None) -> int | None:
    multiple = multiple or (CUDA_PAD_MULTIPLE if torch.cuda.is_available() else 1)
    return None if multiple == 1 else multiple


def training_arguments(scratch: str, hp: dict, seed: int, train_windows: int) -> TrainingArguments:
    """The paper's fine-tuning settings as Trainer arguments: AdamW (no decay on biases and LayerNorm), gradient
    clipping at 1, no evaluation or checkpoints during training; hparams' precision (auto: bf16 on CUDA, fp32 on
    CPU)."""
    total_steps = math.ceil(train_windows / hp["batch_size"]) * hp["epochs"]
    cuda = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=scratch,
        seed=seed,
        learning_rate=hp["learning_rate"],
        weight_decay=hp["weight_decay"],
        lr_scheduler_type=hp["scheduler"],
        warmup_steps=math.ceil(total_steps * hp["warmup_ratio"]),
        num_train_epochs=hp["epochs"],
        per_device_train_batch_size=hp["batch_size"],
        per_device_eval_batch_size=hp["eval_batch_size"],
        max_grad_norm=1.0,
        **precision_flags(hp.get("precision", "auto")),
        train_sampling_strategy="group_by_length" if hp["group_by_length"] else "random",
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="steps",
        logging_steps=hp["logging_steps"],
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=cuda,
        # The host need not wait for the GPU: batches copied from pinned memory without waiting for the copy, and
        # no read of each step's loss for the NaN filter (a NaN loss is logged as it is)
        accelerator_config={"non_blocking": cuda},
        logging_nan_inf_filter=False,
    )
    return one_gpu(args)


def bf16() -> bool:
    """What precision auto gives: bf16 on a CUDA GPU that has it."""
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def resolved_precision(precision: str) -> str:
    """bf16, fp16 or fp32: auto resolved on this machine (the paper trained in fp32); bf16 or fp16 set by hand on a
    machine without it is a ConfigError."""
    flags = precision_flags(precision)
    return "bf16" if flags["bf16"] else "fp16" if flags["fp16"] else "fp32"


def argmax_labels(logits, labels):
    return logits.argmax(-1)  # keep label ids, not the logits, across batches


def train_and_predict(model, tokenizer, encoded: dict, hp: dict, seed: int) -> tuple[dict, dict]:
    """Fine-tune in place, then predict dev and test. Returns (training figures, per split the arg-max label
    id of every position of every window)."""
    train_features = window_features(encoded["train"], with_labels=True)
    padding = pad_multiple(hp["pad_to_multiple_of"])
    collator = DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=padding)
    progress = ProgressLog(len(train_features), hp["batch_size"])
    arithmetic = resolved_precision(hp.get("precision", "auto"))
    device = (
        f"cuda ({arithmetic})"
        if torch.cuda.is_available()
        else f"cpu ({torch.get_num_threads()} threads, {arithmetic})"
    )
    print(
        f"training on {len(train_features)} windows, {hp['epochs']} epochs, batch {hp['batch_size']}, {device}, "
        f"{'length-grouped' if hp['group_by_length'] else 'random'} batches padded to a multiple of "
        f"{padding or 1}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="compact-biomed-ner-") as scratch:  # Trainer's output_dir: ours alone
        trainer = Trainer(
            model=model,
            args=training_arguments(scratch, hp, seed, len(train_features)),
            data_collator=collator,
            train_dataset=train_features,
            callbacks=[progress],
            preprocess_logits_for_metrics=argmax_labels,
        )
        trainer.remove_callback(PrinterCallback)  # ProgressLog prints instead of raw log dicts
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        predictions = {name: predict(trainer, encoded[name]) for name in ("dev", "test")}
    samples = len(train_features) * hp["epochs"]
    figures = {
        "train_samples_per_second": round(samples / seconds, 2) if seconds > 0 else None,
        "epoch_samples_per_second": progress.epoch_rates,
    }
    return figures, predictions


def predict(trainer: Trainer, split: EncodedSplit) -> list[np.ndarray]:
    """Arg-max label id per window position; windows go in length order (little padding) and come back in
    split order."""
    lengths = np.array([len(ids) for ids in split.input_ids])
    order = np.argsort(lengths, kind="stable")
    features = window_features(split, with_labels=False)
    best = trainer.predict([features[i] for i in order]).predictions
    predictions: list[np.ndarray] = [None] * len(lengths)  # type: ignore[list-item]
    for row, i in enumerate(order):
        predictions[i] = best[row, : lengths[i]]
    return predictions
