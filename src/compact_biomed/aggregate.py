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


SCORING = {"paper": "sub-token scoring, the paper's protocol (official ner.py: every piece carries its word's tag)",
           "word": "word-level scoring, the standard protocol (BioBERT/BLURB: the first piece stands for the word)"}
DEMO_NOTE = ("DEMO: these numbers come from tiny random models trained for a few steps on generated data. They show "
             "that every stage runs and learns; they cannot be compared with the paper's or any published value.")
PUBLISHED_COLUMNS = ["dataset", "model", "scoring", "metric", "value", "source"]


def read_published(path: str | Path | None) -> pd.DataFrame:
    """Published F1 (percent): one row per (model, dataset, scoring) with its source; '#' lines are comments."""
    if not path:
        return pd.DataFrame(columns=PUBLISHED_COLUMNS)
    table = pd.read_csv(path, sep="\t", comment="#", dtype={"value": float})
    missing = set(PUBLISHED_COLUMNS) - set(table.columns)
    if missing:
        raise InputError(path, f"missing columns {sorted(missing)}")
    unknown = set(table["scoring"]) - set(MODES)
    if unknown:
        raise InputError(path, f"unknown scoring {sorted(unknown)}; expected one of {list(MODES)}")
    return table[table.metric == "F1"][PUBLISHED_COLUMNS].reset_index(drop=True)


def published_lookup(published: pd.DataFrame, mode: str) -> dict[tuple[str, str], tuple[float, str]]:
    """{(model, dataset): (value, source)} for one scoring protocol."""
    rows = published[published.scoring == mode]
    return {(r.model, r.dataset): (r.value, r.source) for r in rows.itertuples()}


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


def markdown_row(cells: list[str]) -> str:
    return f"| {' | '.join(cells)} |\n"


class Table(NamedTuple):
    """One rendered-agnostic table: the Markdown and HTML outputs show exactly the same cells."""

    title: str
    header: list[str]
    rows: list[list[str]]
    note: str


def f1_table(lookup, models, datasets, mode) -> Table:
    return Table(f"Test F1 (%), {mode} scoring", ["Model", *datasets],
                 [[m, *(fmt_cell(lookup.get((m, d))) for d in datasets)] for m in models],
                 f"{SCORING[mode]}. Mean ± sample standard deviation over seeds (number of seeds that finished).")


def comparison_table(lookup, published, models, datasets, mode) -> Table | None:
    """Ours beside every published value of this protocol for a row and dataset of the table; None if none."""
    rows = []
    for model in models:
        for dataset in datasets:
            if (model, dataset) not in published:
                continue
            value, source = published[(model, dataset)]
            ours = lookup.get((model, dataset))
            diff = f"{ours['mean'] - value:+.2f}" if ours else "—"
            rows.append([model, dataset, fmt_cell(ours), f"{value:.2f}", diff, source])
    if not rows:
        return None
    return Table(f"Against published values, {mode} scoring",
                 ["Model", "Dataset", "Ours", "Published", "Difference", "Source"], rows,
                 "Difference: our mean minus the published value, same protocol. Rows and datasets without a "
                 "published value of this protocol are left out, never shown as 0.")


def published_table(published: pd.DataFrame, mode: str, datasets: list[str]) -> Table | None:
    """The published values of one protocol as models x datasets: the reference a run aims at. Columns: the
    configured datasets first, then the others in the file's order, the same for both protocols."""
    rows = published[published.scoring == mode]
    if rows.empty:
        return None
    order = [d for d in dict.fromkeys([*datasets, *published["dataset"]]) if d in set(rows["dataset"])]
    wide = rows.pivot_table(index="model", columns="dataset", values="value", aggfunc="first", sort=False)
    wide = wide.reindex(columns=order)
    cells = [[model, *("" if math.isnan(v) else f"{v:.2f}" for v in values)] for model, values in wide.iterrows()]
    sources = "; ".join(dict.fromkeys(rows["source"]))
    return Table(f"Published test F1 (%), {mode} scoring", ["Model", *wide.columns], cells,
                 f"{SCORING[mode]}. Sources: {sources}. Empty: not published.")


def provenance_table(sources: dict[str, str]) -> Table:
    return Table("Where each row's weights come from", ["Model", "Weights"], [[m, s] for m, s in sources.items()],
                 "Hub rows show the commit their pinned revision resolved to when fetched; local folders the "
                 "sha256 of their weights; models trained here their recipe's folder.")


def f1_tables(stats, models, datasets, modes, published, sources=None, demo=False) -> list[Table]:
    """Per protocol: our F1, then ours beside its published values; then the published reference tables and
    where each row's weights came from."""
    tables = []
    for mode in modes:
        lookup = stat_lookup(stats, mode)
        tables.append(f1_table(lookup, models, datasets, mode))
        comparison = comparison_table(lookup, published_lookup(published, mode), models, datasets, mode)
        tables += [comparison] if comparison and not demo else []
    tables += [t for t in (published_table(published, mode, datasets) for mode in modes) if t]
    tables += [provenance_table(sources)] if sources else []
    return tables


def markdown_table(table: Table) -> str:
    lines = markdown_row(table.header) + markdown_row(["---"] * len(table.header))
    lines += "".join(markdown_row(row) for row in table.rows)
    return f"## {table.title}\n\n{lines}\n{table.note}\n"


def markdown_page(title: str, tables: list[Table], banner: str | None = None) -> str:
    head = f"# {title}\n\n" + (f"**{banner}**\n\n" if banner else "")
    return head + "\n".join(markdown_table(t) for t in tables)


# Plain HTML for the Snakemake report, which shows .html results in a frame (Markdown and CSV only as downloads).
HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 0.5em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
p.note { color: #555; max-width: 60em; }
p.banner { background: #fff3cd; border: 1px solid #e0c060; padding: 0.6em; max-width: 60em; font-weight: bold; }
"""


def html_inline(text: str) -> str:
    """Escape text for HTML; `code` spans (the Markdown notes use them) become <code> elements."""
    return re.sub(r"`([^`]*)`", r"<code>\1</code>", html.escape(text))


def html_table(table: Table) -> str:
    cells = lambda row, tag: "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in row)
    body = "".join(f"<tr>{cells(row, 'td')}</tr>\n" for row in table.rows)
    return (f"<h2>{html.escape(table.title)}</h2>\n<table>\n<thead><tr>{cells(table.header, 'th')}</tr></thead>\n"
            f"<tbody>\n{body}</tbody>\n</table>\n<p class=\"note\">{html_inline(table.note)}</p>\n")


def html_page(title: str, tables: list[Table], banner: str | None = None) -> str:
    """A standalone page (no external resources: the report embeds it as a data URI)."""
    return (f"<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n"
            f"<style>{HTML_STYLE}</style>\n</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
            + (f"<p class=\"banner\">{html.escape(banner)}</p>\n" if banner else "")
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


def tidy_with_published(stats: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """The tidy statistics plus each published value (statistic `published`, with its `source`) and our
    difference to it (`diff`), each in its own protocol."""
    extra = []
    for r in published.itertuples():
        key = {"model": r.model, "dataset": r.dataset, "mode": r.scoring}
        extra.append({**key, "statistic": "published", "value": r.value, "source": r.source})
        ours = stats[(stats.model == r.model) & (stats.dataset == r.dataset) & (stats["mode"] == r.scoring)
                     & (stats.statistic == "mean")]
        extra += [{**key, "statistic": "diff", "value": row.value - r.value, "source": r.source}
                  for row in ours.itertuples()]
    columns = [*stats.columns, "source"]
    return pd.concat([stats.reindex(columns=columns), pd.DataFrame(extra, columns=columns)], ignore_index=True)


def model_sources(model_dirs: dict[str, str | Path]) -> dict[str, str]:
    """{model: where its weights came from}, from each directory's source.json (none: trained here)."""
    from .checkpoints import SOURCE_FILE
    from .pretrained import provenance_text

    out = {}
    for model, folder in model_dirs.items():
        source = Path(folder) / SOURCE_FILE
        out[model] = provenance_text(read_json(source)) if source.exists() else f"pre-trained here ({folder})"
    return out


def write_tables(metrics_paths, markdown_path, csv_path, models: list[str], datasets: list[str],
                 mode: str = "paper", latex_path=None, published=None, html_path=None, model_dirs=None,
                 demo: bool = False) -> pd.DataFrame:
    """Write the Markdown and HTML tables (both protocols, each beside its published values, the published
    reference and each row's provenance), the tidy CSV (both protocols, published values, differences and
    sources) and the LaTeX table of `mode`; return the tidy statistics. `demo` states on every table that its
    numbers cannot be compared with published ones."""
    stats = summarise(collect(metrics_paths))
    reference = read_published(published)
    modes = [mode, *(m for m in MODES if m != mode)]
    tables = f1_tables(stats, models, datasets, modes, reference, model_sources(model_dirs or {}), demo)
    banner = DEMO_NOTE if demo else None
    write_text(markdown_path, markdown_page("NER results", tables, banner))
    with atomic_path(csv_path) as tmp:
        tidy_with_published(stats, reference).to_csv(tmp, index=False, float_format="%.4f")
    if latex_path:
        note = f"% {DEMO_NOTE}\n" if demo else ""
        write_text(latex_path, note + latex_table(stats, models, datasets, mode))
    if html_path:
        write_text(html_path, html_page("NER results", tables, banner))
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


DEMO_MODELS_NOTE = "DEMO: tiny random models; their sizes and speeds say nothing about the paper's models."


def write_model_stats(stats_paths, markdown_path, csv_path, html_path, models: list[str],
                      reference: str | None = None, demo: bool = False) -> pd.DataFrame:
    """The size/speed table as Markdown, HTML (the report's view) and a CSV with the raw numbers."""
    frame = model_stats_frame(list(stats_paths), models)
    table = model_stats_table(frame, reference)
    banner = DEMO_MODELS_NOTE if demo else None
    write_text(markdown_path, markdown_page("Models", [table], banner))
    write_text(html_path, html_page("Models", [table], banner))
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
    write_text(markdown_path, markdown_page("Data", tables))
    write_text(html_path, html_page("Data", tables))
