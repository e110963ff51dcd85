"""The model table: size and speed of each model (parameters, with and without embedding tables, disk size,
inference speed), measured one model at a time, in two rounds of opposite order (`write_all`), then tabulated as
Markdown, HTML and CSV.

Speed is measured the way the NER jobs predict: the model's own tokenizer turns each NER test set into the
same windows `ner.encode.encode_split` builds, a freshly headed token-classification model runs forward over
length-sorted batches (the NER jobs' collator and precision) under `torch.inference_mode`, and only the
batching and forward passes are timed (tokenisation and loading are excluded). Passes repeat until
`min_seconds` have elapsed, so tiny models still give a stable sentences-per-second figure. The device (cuda
when available, as in fine-tuning) is recorded with the numbers.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..io import InputError, atomic_path, read_json, write_json, write_text
from ..ner.data import Sentence, read_split
from ..ner.encode import EncodedSplit, encode_split
from ..ner.model import load_token_classifier, load_tokenizer, window_length
from ..ner.train import bf16, pad_multiple, window_features
from .render import Table, html_page, markdown_page

WEIGHT_SUFFIXES = (".safetensors", ".bin")


def count_parameters(model: torch.nn.Module) -> dict[str, int]:
    """{"parameters", "embedding_parameters", "parameters_without_embeddings"} of a module.

    Embedding parameters are the lookup tables (every nn.Embedding: word, position, token type), the usual
    "non-embedding" convention; tied tensors count once, as `model.parameters()` yields them once.
    """
    total = sum(p.numel() for p in model.parameters())
    tables = {id(p): p.numel() for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    embedding = sum(tables.values())
    return {"parameters": total, "embedding_parameters": embedding, "parameters_without_embeddings": total - embedding}


def disk_bytes(directory: str | Path) -> dict[str, int]:
    """{"disk_bytes": every file under the directory, "weight_bytes": the weight files alone}."""
    files = [p for p in Path(directory).rglob("*") if p.is_file()]
    return {
        "disk_bytes": sum(p.stat().st_size for p in files),
        "weight_bytes": sum(p.stat().st_size for p in files if p.name.endswith(WEIGHT_SUFFIXES)),
    }


def labels_in(sentences: list[Sentence]) -> dict[int, str]:
    """id2label over the tags of the test set: the head's size barely matters for speed, its presence does."""
    tags = sorted({tag for _, sentence_tags in sentences for tag in sentence_tags})
    return dict(enumerate(tags))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)  # CUDA runs asynchronously: wait before reading the clock


def forward_pass(model, features: list[dict], order: np.ndarray, batch_size: int, device, collator) -> None:
    """One inference pass over every window, in length-sorted batches padded by the NER jobs' collator, in bf16
    where they use it (as ner.train.predict)."""
    for start in range(0, len(order), batch_size):
        batch = collator([features[i] for i in order[start : start + batch_size]])
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16()):
            model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))


@torch.inference_mode()
def time_passes(model, split: EncodedSplit, batch_size: int, device, collator, min_seconds: float) -> tuple[int, float]:
    """(passes, seconds): one untimed warm-up pass, then whole passes until min_seconds have elapsed."""
    model.eval()
    features = window_features(split, with_labels=False)
    order = np.argsort([len(ids) for ids in split.input_ids], kind="stable")
    forward_pass(model, features, order, batch_size, device, collator)  # first-call allocations, kernel selection
    synchronize(device)
    passes, start = 0, time.perf_counter()
    while passes == 0 or time.perf_counter() - start < min_seconds:
        forward_pass(model, features, order, batch_size, device, collator)
        synchronize(device)
        passes += 1
    return passes, time.perf_counter() - start


def dataset_speed(
    model_dir, tokenizer, test_tsv, device, batch_size: int, max_length: int, min_seconds: float
) -> tuple[dict, dict[str, int]]:
    """Speed on one test set, and the parameter counts of the token-classification model built for it."""
    from transformers import DataCollatorForTokenClassification

    sentences = read_split(test_tsv)
    id2label = labels_in(sentences)
    model = load_token_classifier(model_dir, id2label).to(device)
    window = window_length(model, max_length)
    split = encode_split(tokenizer, sentences, {v: k for k, v in id2label.items()}, window, "every_piece", test_tsv)
    collator = DataCollatorForTokenClassification(tokenizer, pad_to_multiple_of=pad_multiple(None))
    passes, seconds = time_passes(model, split, batch_size, device, collator, min_seconds)
    speed = {
        "sentences": len(sentences),
        "windows": len(split.input_ids),
        "passes": passes,
        "seconds": round(seconds, 4),
        "sentences_per_second": rate(passes * len(sentences), seconds),
    }
    return speed, count_parameters(model.base_model)


def measure(
    model_dir,
    test_sets: dict[str, str | Path],
    *,
    batch_size: int,
    max_length: int,
    min_seconds: float,
    threads: int | None = None,
) -> dict:
    """Parameters, disk size and per-dataset inference speed of the HF directory `model_dir`.

    Parameters are those of the encoder (`base_model`): the same for every dataset, independent of the
    NER head. `sentences_per_second` over all datasets is total sentences / total forward time.
    """
    if threads:
        torch.set_num_threads(int(threads))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = load_tokenizer(model_dir)  # the pieces fine-tuning sees
    speeds, parameters = {}, {}
    for dataset, test_tsv in test_sets.items():
        speeds[dataset], parameters = dataset_speed(
            model_dir, tokenizer, test_tsv, device, batch_size, max_length, min_seconds
        )
    return {
        "model_dir": str(model_dir),
        **parameters,
        **disk_bytes(model_dir),
        "sentences_per_second": overall_speed(speeds),
        "speed": speeds,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.machine()})",
        "device_type": device.type,
        "precision": "bf16" if bf16() else "fp32",  # as in fine-tuning
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "torch": torch.__version__,
    }


def rate(sentences: int, seconds: float) -> float | None:
    """Sentences per second, as every speed here is written (None for no time at all)."""
    return round(sentences / seconds, 2) if seconds > 0 else None


def overall_speed(speeds: dict[str, dict]) -> float | None:
    """Sentences per second over every test set: all sentences processed / all the forward time."""
    processed = sum(s["passes"] * s["sentences"] for s in speeds.values())
    return rate(processed, sum(s["seconds"] for s in speeds.values()))


def pooled(first: dict, second: dict) -> dict:
    """Two measurements of one model as one: each test set's passes and seconds added up."""
    speeds = {}
    for dataset, one in first["speed"].items():
        other = second["speed"][dataset]
        passes, seconds = one["passes"] + other["passes"], one["seconds"] + other["seconds"]
        speed = rate(passes * one["sentences"], seconds)
        speeds[dataset] = {**one, "passes": passes, "seconds": round(seconds, 4), "sentences_per_second": speed}
    rounds = [first["sentences_per_second"], second["sentences_per_second"]]
    return {
        **first,
        "speed": speeds,
        "sentences_per_second": overall_speed(speeds),
        "rounds": 2,
        "round_speeds": rounds,
    }


def write_all(model_dirs: list, test_sets: dict[str, str | Path], out_jsons: list, **settings) -> list[dict]:
    """`measure` every model twice, the second round in reverse order, pool each model's two and write each as
    JSON (all or nothing). Speeds drift over a process's life (warming caches and clocks): measured once in table
    order, three copies of one model ran at 1.00/1.03/1.06x; the two rounds give each row the same drift."""
    first = [measure(model_dir, test_sets, **settings) for model_dir in model_dirs]
    second = [measure(model_dir, test_sets, **settings) for model_dir in reversed(model_dirs)][::-1]
    stats = [pooled(one, other) for one, other in zip(first, second)]
    for one, out_json in zip(stats, out_jsons, strict=True):
        write_json(out_json, one)
    return stats


def fmt_count(n: float) -> str:
    """Parameter counts as the paper writes them (65M); thousands for the demo's tiny models."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def model_stats_frame(stats_paths, models: list[str]) -> pd.DataFrame:
    """One row per model (in `models` order, named by each file's stem), with per-dataset speeds as columns."""
    by_model = {Path(p).stem: read_json(p) for p in stats_paths}
    unknown = sorted(set(by_model) - set(models))
    if unknown:
        raise InputError(stats_paths[0], f"stats for models not in the table: {unknown}")
    rows = []
    for model in (m for m in models if m in by_model):
        s = by_model[model]
        rows.append(
            {
                "model": model,
                **{
                    k: s[k]
                    for k in (
                        "parameters",
                        "parameters_without_embeddings",
                        "embedding_parameters",
                        "disk_bytes",
                        "weight_bytes",
                        "sentences_per_second",
                        "device",
                        "threads",
                        "batch_size",
                    )
                },
                **{f"sentences_per_second_{d}": v["sentences_per_second"] for d, v in s["speed"].items()},
                **{f"sentences_per_second_round{i}": v for i, v in enumerate(s.get("round_speeds", []), start=1)},
            }
        )
    return pd.DataFrame(rows)


# Each model is measured in two rounds (write_all); rounds this far apart say the measurement is noise (other work
# on the machine, or rounds too short: the demo's tiny models at 0.25 s differed by up to 30% on an idle machine),
# not that the model is fast or slow.
UNSTEADY_RATIO = 1.2
UNSTEADY_MARK = "‡"
UNSTEADY_NOTE = (
    "its two measuring rounds differ by more than 20%, so its speed is unreliable: other work on the machine, or "
    "rounds too short (model_stats.min_seconds); rerun on an idle machine (snakemake --forcerun model_stats)."
)


def unsteady_models(frame: pd.DataFrame) -> set[str]:
    """The models whose two rounds' speeds differ by more than UNSTEADY_RATIO (none for stats without rounds)."""
    if "sentences_per_second_round2" not in frame:
        return set()
    rounds = frame[["sentences_per_second_round1", "sentences_per_second_round2"]]
    return set(frame.loc[rounds.max(axis=1) > UNSTEADY_RATIO * rounds.min(axis=1), "model"])


def model_stats_table(frame: pd.DataFrame, reference: str | None) -> Table:
    """Sizes in parameters and MB, speed in sentences/s and relative to `reference` (the teacher)."""
    base = frame.set_index("model")["sentences_per_second"].get(reference) if reference else None
    header = ["Model", "Parameters", "Without embeddings", "Disk (MB)", "Speed (sentences/s)"]
    if base:
        header.append(f"Speed vs {reference}")
    rows, unsteady = [], unsteady_models(frame)
    for r in frame.itertuples():
        mark = UNSTEADY_MARK if r.model in unsteady else ""
        row = [
            r.model,
            fmt_count(r.parameters),
            fmt_count(r.parameters_without_embeddings),
            f"{r.disk_bytes / 1e6:.1f}",
            f"{r.sentences_per_second:,.0f}{mark}",
        ]
        rows.append(row + [f"{r.sentences_per_second / base:.2f}×{mark}"] if base else row)
    devices = ", ".join(sorted(set(frame["device"])))
    note = (
        f'Encoder parameters (the NER head excluded); "without embeddings" leaves out the embedding tables. '
        f"Disk: the whole Hugging Face directory. Speed: NER test sentences per second, token-classification "
        f"forward only (tokenisation excluded), batch {frame['batch_size'].iloc[0]}, on {devices} with "
        f"{frame['threads'].iloc[0]} thread(s); per-dataset speeds are in the CSV."
    )
    if unsteady:
        note += f" {UNSTEADY_MARK}: {UNSTEADY_NOTE}"
    return Table("Model size and inference speed", pd.DataFrame(rows, columns=header), note)


DEMO_MODELS_NOTE = "DEMO: tiny random models; their sizes and speeds say nothing about the paper's models."


def write_table(
    stats_paths, markdown_path, csv_path, html_path, models: list[str], reference: str | None = None, demo: bool = False
) -> pd.DataFrame:
    """The size/speed table as Markdown, HTML (the report's view) and a CSV with the raw numbers."""
    frame = model_stats_frame(list(stats_paths), models)
    table = model_stats_table(frame, reference)
    banner = DEMO_MODELS_NOTE if demo else None
    write_text(markdown_path, markdown_page("Models", [table], banner))
    write_text(html_path, html_page("Models", [table], banner))
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    return frame
