"""Results tables: test F1 mean and standard deviation over seeds, models as rows and datasets as columns;
the model size/speed table; the corpus and shard statistics. Markdown, CSV, LaTeX and HTML (for the report)."""

from __future__ import annotations

import html
import math
import re
import statistics
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from .io import InputError, atomic_path, read_json, write_text

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


class Table(NamedTuple):
    """One rendered-agnostic table: the Markdown and HTML outputs show exactly the same cells."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str


def f1_tables(stats, models, datasets, mode, paper) -> list[Table]:
    """The F1 table and, when the paper reports any of the datasets, the comparison with its values."""
    lookup = stat_lookup(stats, mode)
    header = ["Model", *datasets]
    scoring = "sub-token level, as the official code" if mode == "paper" else "word level (first sub-token)"
    tables = [Table("Test F1 (%)", header,
                    [[m, *(fmt_cell(lookup.get((m, d))) for d in datasets)] for m in models],
                    f"Mean ± sample standard deviation over seeds (number of seeds that finished); scoring mode "
                    f"`{mode}` ({scoring}).")]
    if any(key[1] in datasets for key in paper):
        tables.append(Table("Against the paper's reported F1", header,
                            [[m, *(fmt_comparison(lookup.get((m, d)), paper.get((m, d))) for d in datasets)]
                             for m in models],
                            "Ours (mean) vs the paper's reported value (difference); — where the paper lists no "
                            "value or no run finished."))
    return tables


def markdown_table(table: Table) -> str:
    lines = markdown_row(table.header) + markdown_row(["---"] * len(table.header))
    lines += "".join(markdown_row(row) for row in table.rows)
    return f"## {table.title}\n\n{lines}\n{table.note}\n"


def markdown_tables(stats, models, datasets, mode, paper) -> str:
    return "\n".join(markdown_table(t) for t in f1_tables(stats, models, datasets, mode, paper))


# Plain HTML for the Snakemake report, which shows .html results in a frame (Markdown and CSV only as downloads).
HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
p.note { color: #555; max-width: 60em; }
"""


def html_inline(text: str) -> str:
    """Escape text for HTML; `code` spans (the Markdown notes use them) become <code> elements."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def html_table(table: Table) -> str:
    cells = lambda row, tag: "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in row)
    body = "".join(f"<tr>{cells(row, 'td')}</tr>\n" for row in table.rows)
    return (f"<h2>{html.escape(table.title)}</h2>\n<table>\n<thead><tr>{cells(table.header, 'th')}</tr></thead>\n"
            f"<tbody>\n{body}</tbody>\n</table>\n<p class=\"note\">{html_inline(table.note)}</p>\n")


def html_page(title: str, tables: list[Table]) -> str:
    """A standalone page (no external resources: the report embeds it as a data URI)."""
    return (f"<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n"
            f"<style>{HTML_STYLE}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            + "".join(html_table(t) for t in tables) + "</body>\n</html>\n")


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
                 mode: str = "paper", latex_path=None, paper_results=None, html_path=None) -> pd.DataFrame:
    """Write the Markdown tables (one scoring mode, with the paper comparison), the tidy CSV (both modes, paper
    values and differences) and optionally LaTeX and HTML (the report's view); return the tidy statistics."""
    stats = summarise(collect(metrics_paths))
    paper = read_paper_results(paper_results)
    write_text(markdown_path, f"# NER results\n\n{markdown_tables(stats, models, datasets, mode, paper)}")
    with atomic_path(csv_path) as tmp:
        tidy_with_paper(stats, paper).to_csv(tmp, index=False, float_format="%.4f")
    if latex_path:
        write_text(latex_path, latex_table(stats, models, datasets, mode))
    if html_path:
        write_text(html_path, html_page("NER results", f1_tables(stats, models, datasets, mode, paper)))
    return stats


# ---------------------------------------------------------------------------------------------------------------
# Model size and speed (one results/model_stats/{model}.json per model)


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
        rows.append({"model": model, **{k: s[k] for k in ("parameters", "parameters_without_embeddings",
                                                         "embedding_parameters", "disk_bytes", "weight_bytes",
                                                         "sentences_per_second", "device", "threads", "batch_size")},
                     **{f"sentences_per_second_{d}": v["sentences_per_second"] for d, v in s["speed"].items()}})
    return pd.DataFrame(rows)


def model_stats_table(frame: pd.DataFrame, reference: str | None) -> Table:
    """Sizes in parameters and MB, speed in sentences/s and relative to `reference` (the teacher)."""
    base = frame.set_index("model")["sentences_per_second"].get(reference) if reference else None
    header = ["Model", "Parameters", "Without embeddings", "Disk (MB)", "Speed (sentences/s)"]
    if base:
        header.append(f"Speed vs {reference}")
    rows = []
    for r in frame.itertuples():
        row = [r.model, fmt_count(r.parameters), fmt_count(r.parameters_without_embeddings),
               f"{r.disk_bytes / 1e6:.1f}", f"{r.sentences_per_second:,.0f}"]
        rows.append(row + [f"{r.sentences_per_second / base:.2f}×"] if base else row)
    devices = ", ".join(sorted(set(frame["device"])))
    note = (f"Encoder parameters (the NER head excluded); \"without embeddings\" leaves out the embedding tables. "
            f"Disk: the whole Hugging Face directory. Speed: NER test sentences per second, token-classification "
            f"forward only (tokenisation excluded), batch {frame['batch_size'].iloc[0]}, on {devices} with "
            f"{frame['threads'].iloc[0]} thread(s); per-dataset speeds are in the CSV.")
    return Table("Model size and inference speed", header, rows, note)


def write_model_stats(stats_paths, markdown_path, csv_path, html_path, models: list[str],
                      reference: str | None = None) -> pd.DataFrame:
    """The size/speed table as Markdown, HTML (the report's view) and a CSV with the raw numbers."""
    frame = model_stats_frame(list(stats_paths), models)
    table = model_stats_table(frame, reference)
    write_text(markdown_path, f"# Models\n\n{markdown_table(table)}")
    write_text(html_path, html_page("Models", [table]))
    with atomic_path(csv_path) as tmp:
        frame.to_csv(tmp, index=False)
    return frame


# ---------------------------------------------------------------------------------------------------------------
# Corpus and tokenisation shards


def corpus_tables(corpus: dict) -> list[Table]:
    """The corpus build in numbers, and the citations and deletions of each baseline file."""
    facts = [("Baseline files", corpus["files"]), ("Citations parsed", corpus["citations_parsed"]),
             ("Deletions listed", corpus["deletions_listed"]), ("Citations deleted", corpus["deleted"]),
             ("Older versions replaced", corpus["duplicates_replaced"]), ("Records kept", corpus["records"]),
             ("… with an abstract", corpus["with_abstract"]), ("… title only", corpus["title_only"]),
             ("Empty text (kept, as in the paper)", corpus["empty_text"]), ("Characters", corpus["characters"])]
    summary = Table("PubMed corpus", ["Statistic", "Value"], [[k, f"{v:,}"] for k, v in facts],
                    f"Text recipe `{corpus['recipe']}`; a record is the newest version of a citation not deleted by "
                    f"a later file.")
    files = Table("Parsed files", ["File", "Citations", "Deletions", "Records kept"],
                  [[f["file"], f"{f['citations']:,}", f"{f['deletions']:,}", f"{f.get('records_kept', 0):,}"]
                   for f in corpus["per_file"]],
                  "Per file, in processing order; a record is kept from the file holding its winning version.")
    return [summary, files]


def shard_table(manifests: dict[str, dict]) -> Table:
    """One row per tokenizer: its shards' rows, tokens and what truncation cut."""
    rows = []
    for owner, manifest in manifests.items():
        totals, first = manifest["totals"], manifest["shards"][0]
        rows.append([owner, f"{totals['shards']}", f"{totals['rows']:,}", f"{totals['tokens']:,}",
                     f"{totals['tokens'] / max(totals['rows'], 1):.1f}", f"{totals['truncated_tokens']:,}",
                     f"{first['mode']} / {first['max_length']}"])
    return Table("Tokenisation shards", ["Tokenizer", "Shards", "Rows", "Tokens", "Tokens per row",
                                         "Truncated tokens", "Mode / max length"], rows,
                 "One set of shards per tokenizer in use: the teacher's (distillation students) and each "
                 "continual model's own; truncated tokens are those cut beyond the maximum length.")


def write_data_stats(corpus_stats, manifest_paths, markdown_path, html_path, teacher: str | None = None) -> None:
    """Corpus and shard statistics as Markdown and HTML; a manifest's tokenizer is its folder's name (the
    teacher's folder is `teacher`, shown with the teacher's name when given)."""
    owner = lambda path: f"{teacher} (teacher)" if teacher and path.parent.name == "teacher" else path.parent.name
    manifests = {owner(Path(p)): read_json(p) for p in manifest_paths}
    tables = [*corpus_tables(read_json(corpus_stats)), shard_table(manifests)]
    write_text(markdown_path, "# Data\n\n" + "\n".join(markdown_table(t) for t in tables))
    write_text(html_path, html_page("Data", tables))
