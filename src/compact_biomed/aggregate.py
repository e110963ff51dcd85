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


def read_paper_results(path: str | Path | None) -> dict[tuple[str, str], float]:
    """The paper's reported F1 (percent) as {(model, dataset): value}; '#' lines carry the source."""
    if not path:
        return {}
    table = pd.read_csv(path, sep="\t", comment="#")
    missing = {"dataset", "model", "metric", "value"} - set(table.columns)
    if missing:
        raise InputError(path, f"missing columns {sorted(missing)}")
    table = table[table.metric == "F1"]
    return {(r.model, r.dataset): float(r.value) for r in table.itertuples()}


def stat_lookup(stats: pd.DataFrame, mode: str) -> dict[tuple[str, str], dict[str, float]]:
    """{(model, dataset): {mean, sd, n}} for one scoring mode."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    for row in stats[stats["mode"] == mode].itertuples():
        out.setdefault((row.model, row.dataset), {})[row.statistic] = row.value
    return out


def fmt_cell(value: dict[str, float] | None) -> str:
    """`mean ± sd (n)`; a model/dataset pair without finished runs shows as missing, never as zero."""
    if not value:
        return "missing"
    sd = "–" if math.isnan(value["sd"]) else f"{value['sd']:.2f}"
    return f"{value['mean']:.2f} ± {sd} ({int(value['n'])})"


def fmt_comparison(ours: dict[str, float] | None, paper: float | None) -> str:
    """`ours vs paper (difference)`, or a dash where either side is unknown."""
    if ours is None or paper is None:
        return "—"
    return f"{ours['mean']:.2f} vs {paper:.2f} ({ours['mean'] - paper:+.2f})"


def markdown_row(cells: list[str]) -> str:
    return f"| {' | '.join(cells)} |\n"


def markdown_tables(stats, models, datasets, mode, paper) -> str:
    lookup = stat_lookup(stats, mode)
    header = markdown_row(["Model", *datasets]) + markdown_row(["---"] * (len(datasets) + 1))
    main = header + "".join(markdown_row([m, *(fmt_cell(lookup.get((m, d))) for d in datasets)]) for m in models)
    scoring = "sub-token level, as the official code" if mode == "paper" else "word level (first sub-token)"
    text = (f"## Test F1 (%)\n\n{main}\nMean ± sample standard deviation over seeds (number of seeds that "
            f"finished); scoring mode `{mode}` ({scoring}).\n")
    if any(key[1] in datasets for key in paper):
        rows = "".join(markdown_row([m, *(fmt_comparison(lookup.get((m, d)), paper.get((m, d))) for d in datasets)])
                       for m in models)
        text += (f"\n## Against the paper's reported F1\n\n{header}{rows}\nOurs (mean) vs the paper's reported value "
                 f"(difference); — where the paper lists no value or no run finished.\n")
    return text


def latex_table(stats, models, datasets, mode) -> str:
    """booktabs table; the best mean per column in bold."""
    lookup = stat_lookup(stats, mode)
    best = {d: max((lookup[(m, d)]["mean"] for m in models if (m, d) in lookup), default=None) for d in datasets}

    def tex_cell(model, dataset):
        value = lookup.get((model, dataset))
        if not value:
            return "--"
        sd = "" if math.isnan(value["sd"]) else f" $\\pm$ {value['sd']:.2f}"
        mean = f"{value['mean']:.2f}"
        return (f"\\textbf{{{mean}}}" if value["mean"] == best[dataset] else mean) + sd

    escape = lambda text: text.replace("_", "\\_").replace("&", "\\&")
    lines = ["\\begin{tabular}{l" + "c" * len(datasets) + "}", "\\toprule",
             " & ".join(["Model", *map(escape, datasets)]) + " \\\\", "\\midrule",
             *(" & ".join([escape(m), *(tex_cell(m, d) for d in datasets)]) + " \\\\" for m in models),
             "\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def tidy_with_paper(stats: pd.DataFrame, paper: dict[tuple[str, str], float]) -> pd.DataFrame:
    """The tidy statistics plus the paper's values (statistic `paper`) and our difference to them (`diff`)."""
    extra = []
    for (model, dataset), value in paper.items():
        extra.append({"model": model, "dataset": dataset, "mode": "paper", "statistic": "paper", "value": value})
        ours = stats[(stats.model == model) & (stats.dataset == dataset) & (stats.statistic == "mean")]
        for row in ours.itertuples():
            extra.append({"model": model, "dataset": dataset, "mode": row.mode, "statistic": "diff",
                          "value": row.value - value})
    return pd.concat([stats, pd.DataFrame(extra, columns=stats.columns)], ignore_index=True)


def write_tables(metrics_paths, markdown_path, csv_path, models: list[str], datasets: list[str],
                 mode: str = "paper", latex_path=None, paper_results=None) -> pd.DataFrame:
    """Write the Markdown tables (one scoring mode, with the paper comparison), the tidy CSV (both modes, paper
    values and differences) and optionally LaTeX; return the tidy statistics."""
    stats = summarise(collect(metrics_paths))
    paper = read_paper_results(paper_results)
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(f"# NER results\n\n{markdown_tables(stats, models, datasets, mode, paper)}")
    with atomic_path(csv_path) as tmp:
        tidy_with_paper(stats, paper).to_csv(tmp, index=False, float_format="%.4f")
    if latex_path:
        with atomic_path(latex_path) as tmp:
            tmp.write_text(latex_table(stats, models, datasets, mode))
    return stats
