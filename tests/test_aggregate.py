"""Aggregation over seeds: mean and sample sd, missing runs, tidy CSV."""

import json
import statistics

import pandas as pd
import pytest

from compact_biomed import aggregate


def write_run(root, model, dataset, seed, f1_paper, f1_word):
    path = root / "results" / "ner" / model / dataset / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True)
    scores = lambda f1: {"precision": f1, "recall": f1, "f1": f1}
    path.write_text(json.dumps({"seed": seed, "test": {"paper": scores(f1_paper), "word": scores(f1_word)},
                                "dev": {"paper": scores(0.0), "word": scores(0.0)}}))
    return path


def test_mean_sd_and_missing(tmp_path):
    paths = [write_run(tmp_path, "A", "d1", s, f, f / 2) for s, f in [(1, 0.80), (2, 0.84), (3, 0.90)]]
    paths.append(write_run(tmp_path, "B", "d1", 1, 0.5, 0.4))
    md, csv = tmp_path / "t.md", tmp_path / "t.csv"
    stats = aggregate.write_tables(paths, md, csv, models=["A", "B", "C"], datasets=["d1", "d2"], mode="paper")

    a = stats[(stats.model == "A") & (stats["mode"] == "paper")].set_index("statistic")["value"]
    assert a["mean"] == pytest.approx(statistics.fmean([80, 84, 90]))
    assert a["sd"] == pytest.approx(statistics.stdev([80, 84, 90]))
    assert a["n"] == 3
    text = md.read_text()
    assert f"| A | {a['mean']:.2f} ± {a['sd']:.2f} (3) | missing |" in text
    assert "| B | 50.00 ± – (1) | missing |" in text  # one seed: no spread, not zero
    assert "| C | missing | missing |" in text

    tidy = pd.read_csv(csv)
    assert set(tidy.columns) == {"model", "dataset", "mode", "statistic", "value"}
    word_mean = tidy.query("model == 'A' and mode == 'word' and statistic == 'mean'")["value"].item()
    assert word_mean == pytest.approx(statistics.fmean([40, 42, 45]), abs=1e-3)


def test_word_mode_table(tmp_path):
    paths = [write_run(tmp_path, "A", "d1", 1, 0.9, 0.7)]
    aggregate.write_tables(paths, tmp_path / "t.md", tmp_path / "t.csv", ["A"], ["d1"], mode="word")
    assert "| A | 70.00 ± – (1) |" in (tmp_path / "t.md").read_text()


def test_bad_metrics_path_is_one_line_error(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text("{}")
    with pytest.raises(aggregate.InputError, match="metrics.json"):
        aggregate.collect([bad])


def test_paper_comparison_and_latex(tmp_path):
    paths = [write_run(tmp_path, m, "NCBI-disease", s, f, f) for m, runs in
             {"DistilBioBERT": [(1, 0.88), (2, 0.86)], "TinyBioBERT": [(1, 0.80), (2, 0.82)]}.items()
             for s, f in runs]
    reference = tmp_path / "paper.tsv"
    reference.write_text("# source line\ndataset\tmodel\tmetric\tvalue\tsource\n"
                         "NCBI-disease\tDistilBioBERT\tF1\t87.93\tPWC\n")
    md, csv, tex = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "t.tex"
    aggregate.write_tables(paths, md, csv, ["DistilBioBERT", "TinyBioBERT"], ["NCBI-disease"],
                           latex_path=tex, paper_results=reference)
    text = md.read_text()
    assert "| DistilBioBERT | 87.00 vs 87.93 (-0.93) |" in text
    assert "| TinyBioBERT | — |" in text  # the paper lists no value: unknown, not zero

    tidy = pd.read_csv(csv)
    diff = tidy.query("model == 'DistilBioBERT' and statistic == 'diff' and mode == 'paper'")["value"].item()
    assert diff == pytest.approx(87.0 - 87.93)
    assert tidy.query("statistic == 'paper'")["value"].tolist() == [87.93]

    latex = tex.read_text()
    assert "\\toprule" in latex and "\\bottomrule" in latex
    assert "DistilBioBERT & \\textbf{87.00} $\\pm$ 1.41" in latex  # best in the column is bold
    assert "TinyBioBERT & 81.00 $\\pm$ 1.41" in latex
