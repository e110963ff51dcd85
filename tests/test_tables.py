"""Aggregation over seeds: mean and sample sd, missing runs, tidy CSV."""

import json
import re
import statistics

import pandas as pd
import pytest

from compact_biomed.tables import ner_f1


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
    stats = ner_f1.write_tables(paths, md, csv, models=["A", "B", "C"], datasets=["d1", "d2"], mode="paper")

    a = stats[(stats.model == "A") & (stats["mode"] == "paper")].set_index("statistic")["value"]
    assert a["mean"] == pytest.approx(statistics.fmean([80, 84, 90]))
    assert a["sd"] == pytest.approx(statistics.stdev([80, 84, 90]))
    assert a["n"] == 3
    text = md.read_text()
    assert f"| A | {a['mean']:.2f} ± {a['sd']:.2f} (3) | missing |" in text
    assert "| B | 50.00 ± – (1) | missing |" in text  # one seed: no spread, not zero
    assert "| C | missing | missing |" in text

    tidy = pd.read_csv(csv)
    assert set(tidy.columns) == {"model", "dataset", "mode", "statistic", "value", "source"}
    word_mean = tidy.query("model == 'A' and mode == 'word' and statistic == 'mean'")["value"].item()
    assert word_mean == pytest.approx(statistics.fmean([40, 42, 45]), abs=1e-3)


def test_word_mode_table(tmp_path):
    paths = [write_run(tmp_path, "A", "d1", 1, 0.9, 0.7)]
    ner_f1.write_tables(paths, tmp_path / "t.md", tmp_path / "t.csv", ["A"], ["d1"], mode="word")
    text = (tmp_path / "t.md").read_text()
    assert text.index("word scoring") < text.index("paper scoring")  # the chosen protocol first, both shown
    assert "| A | 70.00 ± – (1) |" in text and "| A | 90.00 ± – (1) |" in text


def test_bad_metrics_path_is_one_line_error(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text("{}")
    with pytest.raises(ner_f1.InputError, match="metrics.json"):
        ner_f1.collect([bad])


PUBLISHED = ("# source lines\ndataset\tmodel\tscoring\tmetric\tvalue\tsource\n"
             "NCBI-disease\tDistilBioBERT\tpaper\tF1\t87.93\tPWC\n"
             "NCBI-disease\tDistilBioBERT\tword\tF1\t85.00\tBLURB\n"
             "NCBI-disease\tBioBERT\tword\tF1\t89.13\tBLURB\n")


def test_each_protocol_beside_its_published_values_and_latex(tmp_path):
    runs = {"DistilBioBERT": [(1, 0.88, 0.84), (2, 0.86, 0.83)], "TinyBioBERT": [(1, 0.80, 0.70), (2, 0.82, 0.71)]}
    paths = [write_run(tmp_path, m, "NCBI-disease", s, p, w) for m, seeds in runs.items() for s, p, w in seeds]
    reference = tmp_path / "published.tsv"
    reference.write_text(PUBLISHED)
    md, csv, tex = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "t.tex"
    ner_f1.write_tables(paths, md, csv, ["BioBERT", "DistilBioBERT", "TinyBioBERT"], ["NCBI-disease"],
                           latex_path=tex, published=reference)
    text = md.read_text()
    paper, word = text.split("## Test F1 (%), word scoring")
    assert "| DistilBioBERT | NCBI-disease | 87.00 ± 1.41 (2) | 87.93 | -0.93 | PWC |" in paper
    assert "| DistilBioBERT | NCBI-disease | 83.50 ± 0.71 (2) | 85.00 | -1.50 | BLURB |" in word
    assert "| BioBERT | NCBI-disease | missing | 89.13 | — | BLURB |" in word  # published, but no run of ours
    assert "TinyBioBERT | NCBI-disease" not in text  # nothing published for it: no comparison row, no zero
    assert "| BioBERT | missing |" in paper  # its row stays in our table, empty
    assert "## Published test F1 (%), word scoring" in text

    tidy = pd.read_csv(csv)
    distil = tidy.query("model == 'DistilBioBERT'").set_index(["mode", "statistic"])["value"]
    assert distil[("paper", "diff")] == pytest.approx(87.0 - 87.93)
    assert distil[("word", "diff")] == pytest.approx(83.5 - 85.0)  # against the word-level value, not the paper's
    assert tidy.query("statistic == 'published'")["source"].tolist() == ["PWC", "BLURB", "BLURB"]

    latex = tex.read_text()
    assert "\\toprule" in latex and "\\bottomrule" in latex
    assert "DistilBioBERT & \\textbf{87.00} $\\pm$ 1.41" in latex  # best in the column is bold
    assert "TinyBioBERT & 81.00 $\\pm$ 1.41" in latex

    reference.write_text(PUBLISHED + "BC2GM\tBioBERT\tword\tF1\t83.82\tBLURB\nBC2GM\tX\tpaper\tF1\t86.00\tPWC\n")
    ner_f1.write_tables(paths, md, csv, ["DistilBioBERT"], ["BC2GM", "NCBI-disease"], published=reference)
    headers = re.findall(r"^## Published.*\n\n(\| Model .*)$", md.read_text(), re.MULTILINE)
    assert headers == ["| Model | BC2GM | NCBI-disease |"] * 2  # configured datasets first, same in both protocols


def test_published_file_without_scoring_column_is_one_line_error(tmp_path):
    reference = tmp_path / "published.tsv"
    reference.write_text("dataset\tmodel\tmetric\tvalue\tsource\nNCBI-disease\tX\tF1\t80\tsomewhere\n")
    with pytest.raises(ner_f1.InputError, match=r"published.tsv: missing columns \['scoring'\]"):
        ner_f1.read_published(reference)


def test_demo_tables_say_they_cannot_be_compared(tmp_path):
    paths = [write_run(tmp_path, "A", "d1", 1, 0.9, 0.7)]
    md, html_path, tex = tmp_path / "t.md", tmp_path / "t.html", tmp_path / "t.tex"
    ner_f1.write_tables(paths, md, tmp_path / "t.csv", ["A"], ["d1"], latex_path=tex, html_path=html_path,
                           demo=True)
    for path in (md, html_path, tex):
        assert "cannot be compared with the paper" in path.read_text(), path.name
