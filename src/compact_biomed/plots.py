"""Figures for the report: NER F1 per model and dataset with error bars over seeds, and pre-training loss curves.

matplotlib's object API on the Agg canvas: no pyplot global state and no display needed, so the figures render
the same on a laptop, a headless cluster node and in tests.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .aggregate import MODES
from .io import InputError, atomic_path

MODE_LABELS = {"paper": "sub-token scoring (paper)", "word": "word-level scoring"}
DPI = 120


def save(figure: Figure, out_path) -> None:
    """PNG via the Agg canvas, written all or nothing."""
    FigureCanvasAgg(figure)
    with atomic_path(out_path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")


# ---------------------------------------------------------------------------------------------------------------
# NER F1


def f1_errorbars(tidy: pd.DataFrame, models: list[str], datasets: list[str], mode: str) -> pd.DataFrame:
    """Rows (model, dataset) in table order with the mean F1, its sample sd over seeds and the seed count.

    A pair without runs has NaN mean (no bar); a single seed has no spread, drawn without an error bar.
    """
    ours = tidy[(tidy["mode"] == mode) & tidy["statistic"].isin(["mean", "sd", "n"])]
    wide = ours.pivot_table(index=["model", "dataset"], columns="statistic", values="value", aggfunc="first")
    index = pd.MultiIndex.from_product([models, datasets], names=["model", "dataset"])
    wide = wide.reindex(index=index, columns=["mean", "sd", "n"])
    wide["n"] = wide["n"].fillna(0).astype(int)
    return wide.reset_index()


def draw_f1_panel(ax, bars: pd.DataFrame, models: list[str], datasets: list[str], mode: str) -> None:
    """Grouped bars: one group per dataset, one bar per model, sd error bars, "n/a" where no run finished."""
    width = 0.8 / len(models)
    for i, model in enumerate(models):
        rows = bars[bars["model"] == model].set_index("dataset").reindex(datasets)
        x = [j + (i - (len(models) - 1) / 2) * width for j in range(len(datasets))]
        # NaN heights draw no bar, NaN sd no error bar: missing stays visibly missing, never zero
        ax.bar(x, rows["mean"], width, yerr=rows["sd"], capsize=3, label=model, color=f"C{i % 10}",
               error_kw={"elinewidth": 1})
        for xi, mean in zip(x, rows["mean"]):
            if math.isnan(mean):
                ax.text(xi, 1, "n/a", ha="center", va="bottom", rotation=90, fontsize=7)
    ax.set_xticks(range(len(datasets)), datasets)
    ax.set_xlabel("NER dataset")
    ax.set_ylabel("Test F1 (%)")
    ax.set_ylim(0, 100)
    ax.set_title(MODE_LABELS.get(mode, mode))
    ax.grid(axis="y", alpha=0.3)


def f1_figure(tidy: pd.DataFrame, models: list[str], datasets: list[str], modes=MODES) -> Figure:
    """One panel per scoring mode, stacked, with the model legend beside them."""
    figure = Figure(figsize=(max(6.0, 0.22 * len(models) * len(datasets) + 2), 3.6 * len(modes)),
                    layout="constrained")
    axes = figure.subplots(len(modes), 1, squeeze=False)[:, 0]
    for ax, mode in zip(axes, modes):
        draw_f1_panel(ax, f1_errorbars(tidy, models, datasets, mode), models, datasets, mode)
    figure.legend(*axes[0].get_legend_handles_labels(), title="Model", fontsize=8, loc="outside lower center",
                  ncols=min(4, len(models)))
    figure.suptitle("NER test F1: mean ± sample standard deviation over seeds")
    return figure


def plot_f1(tidy_csv, out_png, models: list[str], datasets: list[str]) -> None:
    """The F1 figure from aggregate's tidy CSV (statistics mean/sd/n per model, dataset and mode)."""
    save(f1_figure(pd.read_csv(tidy_csv), models, datasets), out_png)


# ---------------------------------------------------------------------------------------------------------------
# Pre-training losses


def read_train_log(path) -> pd.DataFrame:
    """train_log.jsonl (one JSON object per logging step) as a frame sorted by step."""
    path = Path(path)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows or any("step" not in row for row in rows):
        raise InputError(path, "no logging steps (each line needs a 'step')")
    return pd.DataFrame(rows).sort_values("step")


def loss_columns(log: pd.DataFrame) -> list[str]:
    """The total (weighted) loss first, then each unweighted term (`loss_<term>`)."""
    return [c for c in log.columns if c == "loss"] + sorted(c for c in log.columns if c.startswith("loss_"))


def curve_labels(log: pd.DataFrame) -> dict[str, str]:
    """{column: legend label}; a single term equal to the total (continual MLM) is drawn once, not twice."""
    columns = loss_columns(log)
    terms = [c for c in columns if c != "loss"]
    if "loss" in columns and len(terms) == 1 and np.allclose(log["loss"], log[terms[0]], rtol=1e-5):
        return {terms[0]: f"{terms[0].removeprefix('loss_')} (= total)"}
    return {c: "total (weighted)" if c == "loss" else c.removeprefix("loss_") for c in columns}


def spans_magnitudes(values: np.ndarray) -> bool:
    """Log scale pays off when the values are positive and span more than a factor of 10 (distillation terms
    differ by orders of magnitude); a single slowly falling MLM loss reads better on a linear axis."""
    values = values[~np.isnan(values)]  # NaN: a term not logged at that step
    return bool(values.size) and values.min() > 0 and values.max() / values.min() > 10


def draw_loss_panel(ax, log: pd.DataFrame, model: str) -> None:
    """One line per loss term (the total in black), x in optimizer steps."""
    labels = curve_labels(log)
    columns = list(labels)
    for column, label in labels.items():
        style = {"linewidth": 2.2, "color": "black"} if column == "loss" else {"linewidth": 1.3}
        ax.plot(log["step"], log[column], marker="o", markersize=3, label=label, **style)
    if spans_magnitudes(log[columns].to_numpy(dtype=float)):
        ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(model)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss value (unitless, log scale)" if ax.get_yscale() == "log" else "loss value (unitless)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


def loss_figure(logs: dict[str, pd.DataFrame], columns: int = 3) -> Figure:
    """A grid with one panel per model."""
    rows = math.ceil(len(logs) / columns)
    figure = Figure(figsize=(4.6 * columns, 3.6 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (model, log) in zip(axes, logs.items()):
        draw_loss_panel(ax, log, model)
    for ax in axes[len(logs):]:
        ax.set_visible(False)
    figure.suptitle("Pre-training loss per model and loss term")
    return figure


def plot_losses(train_logs: dict[str, str | Path], out_png) -> None:
    """{model: train_log.jsonl} -> the loss-curve grid."""
    save(loss_figure({model: read_train_log(path) for model, path in train_logs.items()}), out_png)
