"""Results tables: test F1 mean and standard deviation over seeds, models as rows and datasets as columns."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pandas as pd

from .io import InputError, atomic_path, read_json

MODES = ("paper", "word")


def run_key(metrics_path: str | Path) -> tuple[str, str]:
    """(model, dataset) of a run from its path: results/ner/{model}/{dataset}/seed{seed}/metrics.json."""
    parts = Path(metrics_path).parts
    if len(parts) < 4 or not parts[-2].startswith("seed"):
        raise InputError(metrics_path, "not a results/ner/<model>/<dataset>/seed<N>/metrics.json path")
    return parts[-4], parts[-3]


def collect(metrics_paths: list[str | Path]) -> pd.DataFrame:
    """One row per (model, dataset, seed, mode): the test precision, recall and F1 of each run."""
    rows = []
    for path in metrics_paths:
        model, dataset = run_key(path)
        metrics = read_json(path)
        for mode in MODES:
            scores = metrics["test"][mode]
            rows.append({"model": model, "dataset": dataset, "seed": metrics["seed"], "mode": mode,
                         **{k: scores[k] for k in ("precision", "recall", "f1")}})
    return pd.DataFrame(rows, columns=["model", "dataset", "seed", "mode", "precision", "recall", "f1"])


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Tidy statistics: one row per (model, dataset, mode, statistic) with F1 in percent."""
    rows = []
    for (model, dataset, mode), group in runs.groupby(["model", "dataset", "mode"], sort=False):
        f1 = [100 * v for v in group["f1"]]
        sd = statistics.stdev(f1) if len(f1) > 1 else math.nan  # sample sd over seeds
        for statistic, value in (("mean", statistics.fmean(f1)), ("sd", sd), ("n", len(f1))):
            rows.append({"model": model, "dataset": dataset, "mode": mode, "statistic": statistic, "value": value})
    return pd.DataFrame(rows, columns=["model", "dataset", "mode", "statistic", "value"])


def cell(stats: pd.DataFrame, model: str, dataset: str, mode: str) -> str:
    """`mean ± sd (n)`; a model/dataset pair without finished runs shows as missing, never as zero."""
    rows = stats[(stats.model == model) & (stats.dataset == dataset) & (stats["mode"] == mode)]
    if rows.empty:
        return "missing"
    value = dict(zip(rows.statistic, rows.value))
    sd = "–" if math.isnan(value["sd"]) else f"{value['sd']:.2f}"
    return f"{value['mean']:.2f} ± {sd} ({int(value['n'])})"


def markdown_table(stats: pd.DataFrame, models: list[str], datasets: list[str], mode: str) -> str:
    header = f"| Model | {' | '.join(datasets)} |\n|---|{'---|' * len(datasets)}\n"
    body = "".join(f"| {m} | {' | '.join(cell(stats, m, d, mode) for d in datasets)} |\n" for m in models)
    note = (f"\nTest F1 (%), mean ± sample standard deviation over seeds (number of seeds), scoring mode "
            f"`{mode}` ({'sub-token level, as the official code' if mode == 'paper' else 'word level'}).\n")
    return header + body + note


def write_tables(metrics_paths, markdown_path, csv_path, models: list[str], datasets: list[str],
                 mode: str = "paper") -> pd.DataFrame:
    """Write the Markdown table (one scoring mode) and the tidy CSV (both modes); return the statistics."""
    stats = summarise(collect(metrics_paths))
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(f"# NER test F1\n\n{markdown_table(stats, models, datasets, mode)}")
    with atomic_path(csv_path) as tmp:
        stats.to_csv(tmp, index=False, float_format="%.4f")
    return stats
