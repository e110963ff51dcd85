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
from matplotlib.ticker import MaxNLocator, MultipleLocator

from .io import InputError, atomic_path
from .ner import SCORINGS

SCORING_LABELS = {"paper": "sub-token scoring (paper)", "word": "word-level scoring"}
DPI = 120


def save(figure: Figure, out_path) -> None:
    """PNG via the Agg canvas, written all or nothing."""
    FigureCanvasAgg(figure)
    with atomic_path(out_path) as tmp:
        figure.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")


# ---------------------------------------------------------------------------------------------------------------
# NER F1


def f1_errorbars(tidy: pd.DataFrame, models: list[str], datasets: list[str], mode: str) -> pd.DataFrame:
    """Rows (model, dataset) in table order with the mean F1, its sample sd over seeds, the seed count and the
    published value of this protocol (NaN where none).

    A pair without runs has NaN mean (no point); a single seed has no spread, drawn without an error bar.
    """
    ours = tidy[(tidy["mode"] == mode) & tidy["statistic"].isin(["mean", "sd", "n", "published"])]
    wide = ours.pivot_table(index=["model", "dataset"], columns="statistic", values="value", aggfunc="first")
    index = pd.MultiIndex.from_product([models, datasets], names=["model", "dataset"])
    wide = wide.reindex(index=index, columns=["mean", "sd", "n", "published"])
    wide["n"] = wide["n"].fillna(0).astype(int)
    return wide.reset_index()


def value_limits(rows: pd.DataFrame) -> tuple[float, float]:
    """A y-range around the means ± sd and the published values, at least 4 points tall, so that a one-point
    difference is a visible fraction of the axis (a 0-100 axis would flatten it)."""
    values = pd.concat(
        [rows["mean"] - rows["sd"].fillna(0), rows["mean"] + rows["sd"].fillna(0), rows["published"]]
    ).dropna()
    if values.empty:
        return 0.0, 100.0
    low, high = values.min(), values.max()
    pad = max(0.5, 0.08 * (high - low))
    middle, half = (low + high) / 2, max(2.0, (high - low) / 2 + pad)
    return max(0.0, middle - half), min(100.0, middle + half)


def draw_f1_panel(ax, rows: pd.DataFrame, models: list[str], dataset: str, mode: str, demo: bool = False) -> None:
    """One dataset, one protocol: each model's mean with an sd error bar, the published value as a red x, "n/a"
    where no run finished (missing stays visibly missing, never zero)."""
    rows = rows.set_index("model").reindex(models)
    x = np.arange(len(models))
    for i, model in enumerate(models):
        ax.errorbar(
            x[i],
            rows["mean"].iloc[i],
            yerr=rows["sd"].iloc[i],
            fmt="o",
            color=f"C{i % 10}",
            capsize=4,
            markersize=6,
            label=model,
        )
    published = rows["published"]
    if published.notna().any():
        ax.scatter(x, published, marker="x", s=60, color="red", zorder=3, label="published value")
    ax.set_ylim(*value_limits(rows))
    for xi, mean in zip(x, rows["mean"]):
        if math.isnan(mean):
            ax.text(xi, ax.get_ylim()[0], "n/a", ha="center", va="bottom", rotation=90, fontsize=7)
    ax.yaxis.set_minor_locator(MultipleLocator(1))  # a grid line per F1 point
    ax.grid(axis="y", which="both", alpha=0.3)
    ax.set_xticks(x, models, rotation=45, ha="right", fontsize=7)
    ax.set_title(f"{dataset}\n{SCORING_LABELS.get(mode, mode)}" + (" (demo)" if demo else ""), fontsize=9)
    ax.set_ylabel("Test F1 (%)")


def f1_figure(tidy: pd.DataFrame, models: list[str], datasets: list[str], modes=SCORINGS, demo: bool = False) -> Figure:
    """A grid: one row per scoring protocol, one column per dataset, each panel on its own zoomed F1 axis."""
    figure = Figure(
        figsize=(max(6.0, (1.2 + 0.28 * len(models)) * len(datasets)), 3.4 * len(modes) + 0.8), layout="constrained"
    )
    axes = figure.subplots(len(modes), len(datasets), squeeze=False)
    for row, mode in zip(axes, modes):
        bars = f1_errorbars(tidy, models, datasets, mode)
        for ax, dataset in zip(row, datasets):
            draw_f1_panel(ax, bars[bars["dataset"] == dataset], models, dataset, mode, demo)
    handles = {label: handle for ax in axes.ravel() for handle, label in zip(*ax.get_legend_handles_labels())}
    handles = {label: handles[label] for label in sorted(handles, key=lambda label: label == "published value")}
    figure.legend(handles.values(), handles.keys(), fontsize=8, loc="outside lower center", ncols=min(5, len(handles)))
    title = "NER test F1: mean ± sample standard deviation over seeds; red x: published value (same protocol)"
    if demo:
        title += "\nDEMO: tiny random models on generated data; not comparable with the paper or any published value"
    figure.suptitle(title, fontsize=10)
    return figure


def read_tidy(tidy_csv) -> pd.DataFrame:
    """The NER F1 table's tidy CSV, names as written: pandas would read a row named NA, null or None as missing."""
    return pd.read_csv(tidy_csv, keep_default_na=False, na_values={"value": [""]})


def plot_f1(tidy_csv, out_png, models: list[str], datasets: list[str], demo: bool = False) -> None:
    """The F1 figure from the NER F1 table's tidy CSV (statistics mean/sd/n/published per model, dataset and mode)."""
    save(f1_figure(read_tidy(tidy_csv), models, datasets, demo=demo), out_png)


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
    for ax in axes[len(logs) :]:
        ax.set_visible(False)
    figure.suptitle("Pre-training loss per model and loss term")
    return figure


def plot_losses(train_logs: dict[str, str | Path], out_png) -> None:
    """{model: train_log.jsonl} -> the loss-curve grid."""
    save(loss_figure({model: read_train_log(path) for model, path in train_logs.items()}), out_png)
