"""The NER results table: test F1 mean and standard deviation over seeds, models as rows and datasets as columns,
beside the published values; tidy CSV, and Markdown, LaTeX and HTML (for the report) through `render`, the best
mean of each dataset in bold in LaTeX and HTML."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pandas as pd

from ..io import InputError, atomic_path, read_json, write_text
from ..ner import SCORINGS, SPEED_ONLY_HPARAMS
from .render import Table, html_page, markdown_page, styled


def run_key(metrics_path: str | Path) -> tuple[str, str]:
    """(model, dataset) of a run from its path: results/ner/{model}/{dataset}/seed{seed}/metrics.json."""
    parts = Path(metrics_path).parts
    if len(parts) < 4 or not parts[-2].startswith("seed"):
        raise InputError(metrics_path, "not a results/ner/<model>/<dataset>/seed<N>/metrics.json path")
    return parts[-4], parts[-3]


def check_in_table(metrics_paths, models: list[str], datasets: list[str]) -> None:
    """Every run has its row and column: one outside the table would vanish from it without a word."""
    for path in metrics_paths:
        model, dataset = run_key(path)
        for kind, name, names in (("model", model, models), ("dataset", dataset, datasets)):
            if name not in names:
                raise InputError(path, f"{kind} '{name}' is not in the table (the config's: {', '.join(names)})")


def read_metrics(path: str | Path) -> dict:
    """A run's metrics.json; one line naming the file when it is not JSON at all."""
    try:
        return read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(path, f"not valid JSON ({error})") from None


def metric(metrics, path: str | Path, *keys: str):
    """metrics[keys[0]][keys[1]]...; one line naming the first key missing (a file finetune-ner did not write)."""
    value = metrics
    for depth, key in enumerate(keys):
        if not isinstance(value, dict) or key not in value:
            raise InputError(path, f"no {'.'.join(keys[: depth + 1])}: not a metrics.json written by finetune-ner")
        value = value[key]
    return value


def collect(metrics_paths: list[str | Path]) -> pd.DataFrame:
    """One row per (model, dataset, seed, mode): the test precision, recall and F1 of each run, and the splits the
    run cut short (`cut`: comma-separated, empty for a run on every sentence)."""
    rows, seen, settings = [], {}, {}
    for path in metrics_paths:
        model, dataset = run_key(path)
        metrics = read_metrics(path)
        seed = metric(metrics, path, "seed")
        if Path(path).parent.name != f"seed{seed}":  # a run written there by hand with another --seed
            raise InputError(path, f"holds a run of seed {seed}, not of its folder's {Path(path).parent.name}")
        if (model, dataset, seed) in seen:  # it would count as one more seed
            raise InputError(
                path, f"a second run of {model} on {dataset} with seed {seed} (the first: {seen[model, dataset, seed]})"
            )
        seen[model, dataset, seed] = path
        check_same_settings(settings, model, dataset, metrics, path)
        cut = ",".join(metrics.get("cut_splits", []))
        for mode in SCORINGS:
            scores = {k: metric(metrics, path, "test", mode, k) for k in ("precision", "recall", "f1")}
            rows.append({"model": model, "dataset": dataset, "seed": seed, "mode": mode, **scores, "cut": cut})
    return pd.DataFrame(rows, columns=["model", "dataset", "seed", "mode", "precision", "recall", "f1", "cut"])


def check_same_settings(settings: dict, model: str, dataset: str, metrics: dict, path) -> None:
    """Seeds averaged in one cell must have trained alike: a run by hand with other settings (finetune-ner into
    results/ner) would otherwise move the mean without a word. `settings` keeps each cell's first run; runs
    written before metrics.json recorded hparams are not compared."""
    hparams = metrics.get("hparams")
    if hparams is None:
        return
    mine = {key: value for key, value in hparams.items() if key not in SPEED_ONLY_HPARAMS}
    first = settings.setdefault((model, dataset), (mine, path))
    differ = sorted(key for key in mine.keys() | first[0].keys() if mine.get(key) != first[0].get(key))
    if differ:
        shown = ", ".join(f"{key} {mine.get(key)} vs {first[0].get(key)}" for key in differ)
        raise InputError(path, f"trained with other settings than {first[1]} ({shown}): one cell's seeds must match")


def cut_pairs(runs: pd.DataFrame) -> dict[tuple[str, str], str]:
    """{(model, dataset): the splits any of its runs cut short}, for the pairs with such a run."""
    cut = runs[runs["cut"] != ""].groupby(["model", "dataset"])["cut"]
    return {pair: ", ".join(sorted({s for splits in group for s in splits.split(",")})) for pair, group in cut}


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Tidy statistics: one row per (model, dataset, mode, statistic) with F1 in percent, and the splits its runs
    cut short (`cut`)."""
    rows = []
    cut = cut_pairs(runs)
    for (model, dataset, mode), group in runs.groupby(["model", "dataset", "mode"], sort=False):
        f1 = [100 * v for v in group["f1"]]
        sd = statistics.stdev(f1) if len(f1) > 1 else math.nan  # sample sd over seeds
        for statistic, value in (("mean", statistics.fmean(f1)), ("sd", sd), ("n", len(f1))):
            key = {"model": model, "dataset": dataset, "mode": mode}
            rows.append({**key, "statistic": statistic, "value": value, "cut": cut.get((model, dataset), "")})
    return pd.DataFrame(rows, columns=["model", "dataset", "mode", "statistic", "value", "cut"])


SCORING_TITLES = {
    "paper": "sub-token scoring, the paper's protocol (official ner.py: every piece carries its word's tag)",
    "word": "word-level scoring, the standard protocol (BioBERT/BLURB: the first piece stands for the word)",
}
DEMO_NOTE = (
    "DEMO: these numbers come from tiny random models trained for a few steps on generated data. They show "
    "that every stage runs and learns; they cannot be compared with the paper's or any published value."
)
PUBLISHED_COLUMNS = ["dataset", "model", "scoring", "metric", "value", "source"]
CUT_MARK = "†"
CUT_NOTE = (
    "†: trained or scored on part of the dataset (ner.hparams max_train_sentences / max_eval_sentences), so not "
    "comparable with published values."
)


def read_published(path: str | Path | None) -> pd.DataFrame:
    """Published F1 (percent): one row per (model, dataset, scoring) with its source. Lines starting with '#' are
    comments; an empty value is unknown; rows of another metric are left out. Read line by line rather than with
    pandas' `comment=`, which also cuts a '#' inside a line (a source URL's fragment), so that each problem names
    its line."""
    if not path:
        return pd.DataFrame(columns=PUBLISHED_COLUMNS)
    rows, header, seen = [], None, {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = [field.strip() for field in line.split("\t")]
        if header is None:
            header = fields
            missing = [column for column in PUBLISHED_COLUMNS if column not in header]
            if missing:
                raise InputError(path, f"missing columns {missing} (tab-separated: {', '.join(PUBLISHED_COLUMNS)})")
            continue
        if len(fields) != len(header):
            raise InputError(path, f"line {number}: {len(fields)} tab-separated fields, the header has {len(header)}")
        row = dict(zip(header, fields))
        if row["metric"].upper() != "F1" or not row["value"]:  # another metric; an unknown value, as a missing row
            continue
        problem = published_problem(row)
        if problem:
            raise InputError(path, f"line {number}: {problem}")
        key = (row["model"], row["dataset"], row["scoring"])
        if key in seen:
            raise InputError(
                path,
                f"line {number}: a second F1 of {key[0]} on {key[1]}, {key[2]} scoring (line {seen[key]}): keep one",
            )
        seen[key] = number
        rows.append(
            {**{column: row[column] for column in PUBLISHED_COLUMNS}, "metric": "F1", "value": float(row["value"])}
        )
    return pd.DataFrame(rows, columns=PUBLISHED_COLUMNS)


def published_problem(row: dict) -> str | None:
    """What is wrong with one F1 row of a published-values file, or None."""
    if row["scoring"] not in SCORINGS:
        return f"unknown scoring {row['scoring']!r}; expected one of {list(SCORINGS)}"
    try:
        value = float(row["value"])
    except ValueError:
        return f"value {row['value']!r} is not a number (a decimal point, not a comma)"
    if not 1 < value <= 100:  # F1 in percent: 0.555 would be compared as 0.56 %
        return f"F1 {row['value']} is not a percentage (over 1, at most 100: 55.5, not 0.555)"
    if not row["source"]:
        return "no source: say where the value was published"
    if not row["model"] or not row["dataset"]:
        return "no model or dataset"
    return None


def published_lookup(published: pd.DataFrame, mode: str) -> dict[tuple[str, str], tuple[float, str]]:
    """{(model, dataset): (value, source)} for one scoring protocol."""
    rows = published[published.scoring == mode]
    return {(r.model, r.dataset): (r.value, r.source) for r in rows.itertuples()}


def stat_lookup(stats: pd.DataFrame, mode: str) -> dict[tuple[str, str], dict]:
    """{(model, dataset): {mean, sd, n, cut}} for one scoring mode."""
    out: dict[tuple[str, str], dict] = {}
    for row in stats[stats["mode"] == mode].itertuples():
        out.setdefault((row.model, row.dataset), {"cut": row.cut})[row.statistic] = row.value
    return out


def fmt_cell(value: dict | None) -> str:
    """`mean ± sd (n)`, † when its runs cut a split short; a pair without finished runs shows as missing, never
    as zero."""
    if not value:
        return "missing"
    sd = "–" if math.isnan(value["sd"]) else f"{value['sd']:.2f}"
    return f"{value['mean']:.2f} ± {sd} ({int(value['n'])})" + (f" {CUT_MARK}" if value["cut"] else "")


def f1_table(lookup, models, datasets, mode, cell=fmt_cell) -> Table:
    """Models as rows, datasets as columns, each pair's statistics written by `cell`; the best mean of each dataset
    marked (ties as shown, to two decimals, all; missing pairs never)."""
    means = pd.DataFrame({d: [lookup.get((m, d), {}).get("mean", math.nan) for m in models] for d in datasets})
    cells = pd.DataFrame({"Model": models, **{d: [cell(lookup.get((m, d))) for m in models] for d in datasets}})
    cut = any(lookup.get((m, d), {}).get("cut") for m in models for d in datasets)
    return Table(
        f"Test F1 (%), {mode} scoring",
        cells,
        f"{SCORING_TITLES[mode]}. Mean ± sample standard deviation over seeds (number of seeds that finished)."
        + (f" {CUT_NOTE}" if cut else ""),
        means.round(2).eq(means.round(2).max()),
    )


def difference(ours: dict | None, published: float) -> str:
    """Our mean minus the published value, to two decimals (never -0.00); none where ours is missing or cut."""
    if not ours:
        return "—"
    if ours["cut"]:
        return f"not comparable ({ours['cut']} cut)"
    return f"{round(ours['mean'] - published, 2) + 0.0:+.2f}"


def comparison_table(lookup, published, models, datasets, mode) -> Table | None:
    """Ours beside every published value of this protocol for a row and dataset of the table; None if none."""
    rows = []
    for model in models:
        for dataset in datasets:
            if (model, dataset) not in published:
                continue
            value, source = published[(model, dataset)]
            ours = lookup.get((model, dataset))
            rows.append([model, dataset, fmt_cell(ours), f"{value:.2f}", difference(ours, value), source])
    if not rows:
        return None
    header = ["Model", "Dataset", "Ours", "Published", "Difference", "Source"]
    return Table(
        f"Against published values, {mode} scoring",
        pd.DataFrame(rows, columns=header),
        "Difference: our mean over seeds minus the published value, scored the same way; the published runs "
        "may have trained otherwise (one seed, learning rates tuned on dev: see Source). Rows and datasets "
        "without a published value of this protocol are left out, never shown as 0.",
    )


def published_table(published: pd.DataFrame, mode: str, datasets: list[str]) -> Table | None:
    """The published values of one protocol as models x datasets: the reference a run aims at. Columns: the
    configured datasets first, then the others in the file's order, the same for both protocols."""
    rows = published[published.scoring == mode]
    if rows.empty:
        return None
    order = [d for d in dict.fromkeys([*datasets, *published["dataset"]]) if d in set(rows["dataset"])]
    wide = rows.pivot_table(index="model", columns="dataset", values="value", aggfunc="first", sort=False)
    cells = wide.reindex(columns=order).map(lambda v: "" if math.isnan(v) else f"{v:.2f}")
    cells = cells.rename_axis(index="Model", columns=None).reset_index()
    sources = "; ".join(dict.fromkeys(rows["source"]))
    return Table(
        f"Published test F1 (%), {mode} scoring",
        cells,
        f"{SCORING_TITLES[mode]}. Sources: {sources}. Empty: not published.",
    )


def provenance_table(sources: dict[str, str]) -> Table:
    frame = pd.DataFrame({"Model": list(sources), "Weights": list(sources.values())})
    return Table(
        "Where each row's weights come from",
        frame,
        "Hub rows show the commit their pinned revision resolved to when fetched; local folders the "
        "sha256 of their weights; models trained here their recipe's folder.",
    )


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


def tex_cell(value: dict | None) -> str:
    if not value:
        return "--"
    sd = "" if math.isnan(value["sd"]) else f" $\\pm$ {value['sd']:.2f}"
    return f"{value['mean']:.2f}{sd}" + ("$^\\dagger$" if value["cut"] else "")


def latex_table(stats, models, datasets, mode) -> str:
    """booktabs table of mean ± sd (`--`: missing), the best mean per column in bold, after comment lines saying
    what the cells hold; only the names are escaped, the cells hold math."""
    table = f1_table(stat_lookup(stats, mode), models, datasets, mode, tex_cell)
    style = styled(table, "latex").format(escape="latex", subset=["Model"])
    seeds = sorted({int(n) for n in stats.loc[(stats["mode"] == mode) & (stats.statistic == "n"), "value"]})
    over = "/".join(map(str, seeds)) or "no"
    comments = [
        f"Test F1 (%), {SCORING_TITLES[mode]}",
        f"mean +- sample standard deviation over {over} seed(s); --: no run; bold: the best mean of each column",
        "needs \\usepackage{booktabs}",
        *([CUT_NOTE.replace(CUT_MARK, "$^\\dagger$")] if (stats["cut"] != "").any() else []),
    ]
    table_tex = style.to_latex(hrules=True, column_format="l" + "c" * len(datasets), convert_css=True)
    return "".join(f"% {line}\n" for line in comments) + table_tex


def tidy_with_published(stats: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """The tidy statistics plus each published value (statistic `published`, with its `source`) and our
    difference to it (`diff`), each in its own protocol; none to a mean whose runs cut a split short (`cut`)."""
    extra = []
    for r in published.itertuples():
        key = {"model": r.model, "dataset": r.dataset, "mode": r.scoring}
        extra.append({**key, "statistic": "published", "value": r.value, "source": r.source, "cut": ""})
        ours = stats[
            (stats.model == r.model)
            & (stats.dataset == r.dataset)
            & (stats["mode"] == r.scoring)
            & (stats.statistic == "mean")
            & (stats["cut"] == "")  # a cut run is not compared
        ]
        extra += [
            {**key, "statistic": "diff", "value": row.value - r.value, "source": r.source, "cut": ""}
            for row in ours.itertuples()
        ]
    columns = ["model", "dataset", "mode", "statistic", "value", "source", "cut"]
    return pd.concat([stats.reindex(columns=columns), pd.DataFrame(extra, columns=columns)], ignore_index=True)


def model_sources(model_dirs: dict[str, str | Path]) -> dict[str, str]:
    """{model: where its weights came from}, from each directory's source.json (none: trained here)."""
    from ..base_models import SOURCE_FILE
    from ..pretrained import provenance_text

    out = {}
    for model, folder in model_dirs.items():
        source = Path(folder) / SOURCE_FILE
        out[model] = provenance_text(read_json(source)) if source.exists() else f"pre-trained here ({folder})"
    return out


def write_tables(
    metrics_paths,
    markdown_path,
    csv_path,
    models: list[str],
    datasets: list[str],
    *,
    mode: str,
    latex_path=None,
    published=None,
    html_path=None,
    model_dirs=None,
    demo: bool = False,
) -> pd.DataFrame:
    """Write the Markdown and HTML tables (both protocols, each beside its published values, the published
    reference and each row's provenance), the tidy CSV (both protocols, published values, differences and
    sources) and the LaTeX table of `mode`; return the tidy statistics. `demo` states on every table that its
    numbers cannot be compared with published ones."""
    check_in_table(metrics_paths, models, datasets)
    stats = summarise(collect(metrics_paths))
    reference = read_published(published)
    modes = [mode, *(m for m in SCORINGS if m != mode)]
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
