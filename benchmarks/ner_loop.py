"""The NER training loop `compact_biomed.ner` used before it moved to the Hugging Face Trainer (issue 14).

Kept ONLY as bench_ner.py's baseline: its batching, training and prediction, verbatim, around the package's
windowing and (seqeval) scoring, so both arms encode and score alike. Per-epoch rates are added for the benchmark.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer, get_scheduler, set_seed

from compact_biomed import IGNORE_INDEX
from compact_biomed.ner import data as ner_data
from compact_biomed.ner import encode as ner_encode
from compact_biomed.ner import finetune as ner_finetune
from compact_biomed.ner import model as ner_model
from compact_biomed.ner import scoring as ner_scoring

MEGA_BATCH_MULT = 50  # length-grouping window, in batches (as HF's LengthGroupedSampler)


def length_grouped_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle, sort by length inside mega-batches, cut into batches, shuffle the batch order: batches of
    similar lengths (little padding) whose composition and order still change every epoch."""
    order = rng.permutation(len(lengths))
    mega = batch_size * MEGA_BATCH_MULT
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def random_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(len(lengths))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(split: ner_encode.EncodedSplit, indices, pad_id: int, device) -> dict:
    """Pad the chosen windows to the longest of them (dynamic padding)."""
    length = max(len(split.input_ids[i]) for i in indices)
    input_ids = np.full((len(indices), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(indices), length), dtype=np.int64)
    labels = np.full((len(indices), length), IGNORE_INDEX, dtype=np.int64)
    for row, i in enumerate(indices):
        n = len(split.input_ids[i])
        input_ids[row, :n] = split.input_ids[i]
        attention_mask[row, :n] = 1
        labels[row, :n] = split.labels[i]
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return {key: torch.from_numpy(value).to(device) for key, value in batch.items()}


def autocast(device: torch.device):
    """bf16 on CUDA; plain fp32 on CPU (CPU bf16 is slower for these small matmuls)."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def build_optimizer(model, learning_rate: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; biases and LayerNorm weights (the 1-d parameters) get no weight decay, as HF Trainer."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=learning_rate)


def train(model, split: ner_encode.EncodedSplit, hp: dict, seed: int, device, pad_id: int) -> tuple[float, int, list]:
    """Fine-tune in place; returns (seconds, windows seen, per-epoch windows/s)."""
    usable = np.array([i for i, labels in enumerate(split.labels) if (labels != IGNORE_INDEX).any()], dtype=np.int64)
    lengths = np.array([len(split.input_ids[i]) for i in usable])
    make_batches = length_grouped_batches if hp["group_by_length"] else random_batches
    steps_per_epoch = math.ceil(len(usable) / hp["batch_size"])
    total_steps = steps_per_epoch * hp["epochs"]
    optimizer = build_optimizer(model, hp["learning_rate"], hp["weight_decay"])
    scheduler = get_scheduler(
        hp["scheduler"],
        optimizer,
        num_warmup_steps=math.ceil(total_steps * hp["warmup_ratio"]),
        num_training_steps=total_steps,
    )
    rng = np.random.default_rng(seed)
    model.train()
    start, epoch_rates = time.perf_counter(), []
    for _ in range(hp["epochs"]):
        epoch_start = time.perf_counter()
        for batch_indices in make_batches(lengths, hp["batch_size"], rng):
            batch = collate(split, usable[batch_indices], pad_id, device)
            with autocast(device):
                loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        epoch_rates.append(round(len(usable) / (time.perf_counter() - epoch_start), 2))
    return time.perf_counter() - start, len(usable) * hp["epochs"], epoch_rates


@torch.inference_mode()
def predict(model, split: ner_encode.EncodedSplit, batch_size: int, device, pad_id: int) -> list[np.ndarray]:
    """Arg-max label id for every position of every window (length-sorted batches: little padding)."""
    model.eval()
    lengths = np.array([len(ids) for ids in split.input_ids])
    order = np.argsort(lengths, kind="stable")
    predictions: list[np.ndarray] = [None] * len(lengths)  # type: ignore[list-item]
    for start in range(0, len(order), batch_size):
        indices = order[start : start + batch_size]
        batch = collate(split, indices, pad_id, device)
        with autocast(device):
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        best = logits.argmax(-1).cpu().numpy()
        for row, i in enumerate(indices):
            predictions[i] = best[row, : lengths[i]]
    return predictions


def finetune(model_dir, data_dir, seed: int, hparams: dict) -> dict:
    """ner.finetune.finetune as it was, without writing files: returns the same metrics."""
    started = time.perf_counter()
    hp = ner_finetune.resolve_hparams(hparams)
    if hp["threads"]:
        torch.set_num_threads(int(hp["threads"]))
    data_dir = Path(data_dir)
    data = ner_data.load_dataset_dir(data_dir)
    splits = {
        "train": data["train"][: hp["max_train_sentences"]],
        "dev": data["dev"][: hp["max_eval_sentences"]],
        "test": data["test"][: hp["max_eval_sentences"]],
    }
    label2id = {label: i for i, label in enumerate(data["labels"])}
    id2label = dict(enumerate(data["labels"]))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    set_seed(seed)
    model = ner_model.load_token_classifier(model_dir, id2label).to(device)
    max_length = ner_model.window_length(model, hp["max_length"])
    encoded = {
        name: ner_encode.encode_split(
            tokenizer,
            sentences,
            label2id,
            max_length,
            hp["label_mode_train"] if name == "train" else "every_piece",
            name,
        )
        for name, sentences in splits.items()
    }
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    seconds, samples, epoch_rates = train(model, encoded["train"], hp, seed, device, pad_id)
    results = {
        name: ner_scoring.score_split(
            encoded[name], predict(model, encoded[name], hp["eval_batch_size"], device, pad_id), id2label
        )[0]
        for name in ("dev", "test")
    }
    return {
        "seed": seed,
        "train_sentences": len(splits["train"]),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "train_samples_per_second": round(samples / seconds, 2),
        "epoch_samples_per_second": epoch_rates,
        **results,
    }
