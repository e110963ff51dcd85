"""The NER tables: aggregation over seeds (mean and sample sd, missing runs, tidy CSV) and what the Markdown, HTML
and LaTeX renderings show (cells, titles, escaping, the best mean in bold)."""

import json
import re
import statistics

import lxml.html
import pandas as pd
import pytest

from compact_biomed.ner import SCORINGS
from compact_biomed.tables import ner_f1


def markdown_tables(text: str) -> dict[str, pd.DataFrame]:
    """{section title: cells} of every `## title` section's pipe table, the cells without their padding."""
    tables = {}
    for section in text.split("\n## ")[1:]:
        title, body = section.split("\n", 1)
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in body.splitlines() if line.startswith("|")]
        tables[title] = pd.DataFrame(rows[2:], columns=rows[0])  # rows[1]: the alignment row
    return tables


def html_tables(page: str) -> dict[str, pd.DataFrame]:
    """{h2 title: cells} of every table on the page as a browser reads them; a cell that a CSS rule of the page
    makes bold (by its id) reads `**text**`."""
    root = lxml.html.fromstring(page)
    rules = re.findall(r"([^{}]+)\{([^}]*)\}", "".join(root.xpath("//style/text()")))
    bold = {i for selectors, body in rules if "font-weight: bold" in body for i in re.findall(r"#([\w-]+)", selectors)}
    cell = lambda c: f"**{c.text_content()}**" if c.get("id") in bold else c.text_content()
    tables = {}
    for table in root.xpath("//table"):
        rows = [[cell(c) for c in row.xpath("th|td")] for row in table.xpath(".//tr")]
        tables[table.xpath("preceding-sibling::h2[1]")[0].text_content()] = pd.DataFrame(rows[1:], columns=rows[0])
    return tables


def write_run(root, model, dataset, seed, f1_paper, f1_word):
    path = root / "results" / "ner" / model / dataset / f"seed{seed}" / "metrics.json"
    path.parent.mkdir(parents=True)
    scores = lambda f1: {"precision": f1, "recall": f1, "f1": f1}
    path.write_text(
        json.dumps(
            {
                "seed": seed,
                "test": {"paper": scores(f1_paper), "word": scores(f1_word)},
                "dev": {"paper": scores(0.0), "word": scores(0.0)},
            }
        )
    )
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
    paper = markdown_tables(md.read_text())["Test F1 (%), paper scoring"]
    assert paper.columns.tolist() == ["Model", "d1", "d2"]
    assert paper.values.tolist() == [
        ["A", f"{a['mean']:.2f} ± {a['sd']:.2f} (3)", "missing"],
        ["B", "50.00 ± – (1)", "missing"],  # one seed: no spread, not zero
        ["C", "missing", "missing"],
    ]

    tidy = pd.read_csv(csv)
    assert tidy.columns.tolist() == ["model", "dataset", "mode", "statistic", "value", "source", "cut"]
    word_mean = tidy.query("model == 'A' and mode == 'word' and statistic == 'mean'")["value"].item()
    assert word_mean == pytest.approx(statistics.fmean([40, 42, 45]), abs=1e-3)


def test_word_mode_table(tmp_path):
    paths = [write_run(tmp_path, "A", "d1", 1, 0.9, 0.7)]
    ner_f1.write_tables(paths, tmp_path / "t.md", tmp_path / "t.csv", ["A"], ["d1"], mode="word")
    tables = markdown_tables((tmp_path / "t.md").read_text())
    assert list(tables) == ["Test F1 (%), word scoring", "Test F1 (%), paper scoring"]  # the chosen one first
    assert tables["Test F1 (%), word scoring"].values.tolist() == [["A", "70.00 ± – (1)"]]
    assert tables["Test F1 (%), paper scoring"].values.tolist() == [["A", "90.00 ± – (1)"]]


def test_bad_metrics_path_is_one_line_error(tmp_path):
    bad = tmp_path / "metrics.json"
    bad.write_text("{}")
    with pytest.raises(ner_f1.InputError, match="metrics.json"):
        ner_f1.collect([bad])


@pytest.mark.parametrize(("model", "dataset", "problem"), [("Z", "d1", "model 'Z'"), ("A", "d9", "dataset 'd9'")])
def test_a_run_outside_the_table_is_one_line_not_dropped(tmp_path, model, dataset, problem):
    """A run whose model or dataset has no place in the table would vanish from it without a word."""
    paths = [write_run(tmp_path, "A", "d1", 1, 0.9, 0.8), write_run(tmp_path, model, dataset, 2, 0.9, 0.8)]
    with pytest.raises(ner_f1.InputError, match=f"{problem} is not in the table") as error:
        ner_f1.write_tables(paths, tmp_path / "t.md", tmp_path / "t.csv", ["A", "B"], ["d1", "d2"], mode="paper")
    assert error.value.path == str(paths[1]) and not (tmp_path / "t.md").exists()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("{bad", "not valid JSON"),
        ('{"a": 1}', "no seed"),
        ('{"seed": 1, "test": {"paper": {}}}', "no test.paper.precision"),
        ('{"seed": 1, "test": []}', "no test.paper"),
    ],
)
def test_a_metrics_file_that_is_not_a_run_is_one_line_naming_it(tmp_path, content, problem):
    bad = tmp_path / "results" / "ner" / "A" / "d1" / "seed1" / "metrics.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(content)
    with pytest.raises(ner_f1.InputError, match=problem) as error:
        ner_f1.collect([bad])
    assert error.value.path == str(bad) and "\n" not in str(error.value)


PUBLISHED = (
    "# source lines\ndataset\tmodel\tscoring\tmetric\tvalue\tsource\n"
    "NCBI-disease\tDistilBioBERT\tpaper\tF1\t87.93\tPWC\n"
    "NCBI-disease\tDistilBioBERT\tword\tF1\t85.00\tBLURB\n"
    "NCBI-disease\tBioBERT\tword\tF1\t89.13\tBLURB\n"
)


def write_beside_published(tmp_path, paths, models) -> dict:
    """The tables of `paths` on NCBI-disease beside PUBLISHED (in tmp_path/published.tsv), paper scoring first, in
    every format: {"md", "csv", "tex", "html"} -> tmp_path/t.<format>."""
    (tmp_path / "published.tsv").write_text(PUBLISHED)
    out = {name: tmp_path / f"t.{name}" for name in ("md", "csv", "tex", "html")}
    ner_f1.write_tables(
        paths,
        out["md"],
        out["csv"],
        models,
        ["NCBI-disease"],
        latex_path=out["tex"],
        html_path=out["html"],
        published=tmp_path / "published.tsv",
        mode="paper",
    )
    return out


def test_each_protocol_beside_its_published_values_and_latex(tmp_path):
    runs = {"DistilBioBERT": [(1, 0.88, 0.84), (2, 0.86, 0.83)], "TinyBioBERT": [(1, 0.80, 0.70), (2, 0.82, 0.71)]}
    paths = [write_run(tmp_path, m, "NCBI-disease", s, p, w) for m, seeds in runs.items() for s, p, w in seeds]
    out = write_beside_published(tmp_path, paths, ["BioBERT", "DistilBioBERT", "TinyBioBERT"])
    md, csv, tex, reference = out["md"], out["csv"], out["tex"], tmp_path / "published.tsv"
    tables = markdown_tables(md.read_text())
    assert tables["Against published values, paper scoring"].values.tolist() == [
        ["DistilBioBERT", "NCBI-disease", "87.00 ± 1.41 (2)", "87.93", "-0.93", "PWC"]
    ]
    assert tables["Against published values, word scoring"].values.tolist() == [
        ["BioBERT", "NCBI-disease", "missing", "89.13", "—", "BLURB"],  # published, but no run of ours
        ["DistilBioBERT", "NCBI-disease", "83.50 ± 0.71 (2)", "85.00", "-1.50", "BLURB"],
    ]
    # TinyBioBERT: nothing published for it, so no comparison row (and no zero); BioBERT stays in our table
    assert tables["Test F1 (%), paper scoring"].set_index("Model").loc["BioBERT"].tolist() == ["missing"]
    assert tables["Published test F1 (%), word scoring"].values.tolist() == [
        ["DistilBioBERT", "85.00"],
        ["BioBERT", "89.13"],
    ]

    tidy = pd.read_csv(csv)
    distil = tidy.query("model == 'DistilBioBERT'").set_index(["mode", "statistic"])["value"]
    assert distil[("paper", "diff")] == pytest.approx(87.0 - 87.93)
    assert distil[("word", "diff")] == pytest.approx(83.5 - 85.0)  # against the word-level value, not the paper's
    assert tidy.query("statistic == 'published'")["source"].tolist() == ["PWC", "BLURB", "BLURB"]

    latex = tex.read_text()
    assert "\\toprule" in latex and "\\bottomrule" in latex
    assert "DistilBioBERT & \\bfseries 87.00 $\\pm$ 1.41 \\\\" in latex  # best in the column is bold
    assert "TinyBioBERT & 81.00 $\\pm$ 1.41 \\\\" in latex and "BioBERT & -- \\\\" in latex

    reference.write_text(PUBLISHED + "BC2GM\tBioBERT\tword\tF1\t83.82\tBLURB\nBC2GM\tX\tpaper\tF1\t86.00\tPWC\n")
    distil = [path for path in paths if "DistilBioBERT" in path.parts]
    ner_f1.write_tables(
        distil, md, csv, ["DistilBioBERT"], ["BC2GM", "NCBI-disease"], published=reference, mode="paper"
    )
    tables = markdown_tables(md.read_text())
    for mode in SCORINGS:  # configured datasets first, the same in both protocols
        assert tables[f"Published test F1 (%), {mode} scoring"].columns.tolist() == ["Model", "BC2GM", "NCBI-disease"]
    assert tables["Published test F1 (%), paper scoring"].set_index("Model").loc["X"].tolist() == ["86.00", ""]


def test_published_file_without_scoring_column_is_one_line_error(tmp_path):
    reference = tmp_path / "published.tsv"
    reference.write_text("dataset\tmodel\tmetric\tvalue\tsource\nNCBI-disease\tX\tF1\t80\tsomewhere\n")
    with pytest.raises(ner_f1.InputError, match=r"published.tsv: missing columns \['scoring'\]"):
        ner_f1.read_published(reference)


@pytest.mark.parametrize(
    "row, problem",
    [
        ("BC2GM\tX\tpaper\tF1\t55,5\tPWC", "line 6: value '55,5' is not a number"),
        ("BC2GM\tX\tpaper\tF1\t0.555\tPWC", "line 6: F1 0.555 is not a percentage"),
        ("BC2GM\tX\tpaper\tF1\t85.5\t", "line 6: no source"),
        ("BC2GM\tX\tpaper\tF1\t85.5\tPWC\tnote", "line 6: 7 tab-separated fields, the header has 6"),
        ("BC2GM\tX\tsubtoken\tF1\t85.5\tPWC", "line 6: unknown scoring 'subtoken'"),
    ],
)
def test_a_bad_published_row_is_one_line_naming_its_line(tmp_path, row, problem):
    """Each crashed the table job at the end of the run with a traceback, or was compared as if it were right."""
    reference = tmp_path / "published.tsv"
    reference.write_text(PUBLISHED + row + "\n")
    with pytest.raises(ner_f1.InputError, match=f"published.tsv: {problem}"):
        ner_f1.read_published(reference)


def test_published_rows_take_f1_in_any_case_and_keep_a_hash_inside_a_source(tmp_path):
    reference = tmp_path / "published.tsv"
    reference.write_text(PUBLISHED + "BC2GM\tX\tpaper\tf1\t85.5\thttps://example.org/paper#table-2\n")
    row = ner_f1.read_published(reference).query("model == 'X'")
    assert row[["metric", "value", "source"]].values.tolist() == [["F1", 85.5, "https://example.org/paper#table-2"]]


def test_demo_tables_say_they_cannot_be_compared(tmp_path):
    paths = [write_run(tmp_path, "A", "d1", 1, 0.9, 0.7)]
    md, html_path, tex = tmp_path / "t.md", tmp_path / "t.html", tmp_path / "t.tex"
    ner_f1.write_tables(
        paths, md, tmp_path / "t.csv", ["A"], ["d1"], latex_path=tex, html_path=html_path, demo=True, mode="paper"
    )
    for path in (md, html_path, tex):
        assert "cannot be compared with the paper" in path.read_text(), path.name


def test_html_and_latex_mark_the_best_mean_of_each_dataset(tmp_path):
    """Bold is computed from the means per protocol and dataset: 100.00 beats 99.00 (as text it would not); a model
    without runs is never marked; names are escaped for HTML and LaTeX."""
    paths = [write_run(tmp_path, "A<&>", "d_1", s, f, 0.2) for s, f in [(1, 1.0), (2, 1.0)]]
    paths += [
        write_run(tmp_path, "B", "d_1", 1, 0.99, 0.3),
        write_run(tmp_path, "A<&>", "d2", 1, 0.5, 0.5),
        write_run(tmp_path, "B", "d2", 1, 0.6, 0.6),
    ]
    md, page, tex = tmp_path / "t.md", tmp_path / "t.html", tmp_path / "t.tex"
    ner_f1.write_tables(
        paths, md, tmp_path / "t.csv", ["A<&>", "B", "C"], ["d_1", "d2"], latex_path=tex, html_path=page, mode="paper"
    )
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "A&lt;&amp;&gt;" in html and ">A<&><" not in html
    assert not re.search(r"<(link|script|img)\b", html)  # standalone: the report embeds it as a data URI
    tables = html_tables(html)
    assert tables["Test F1 (%), paper scoring"].values.tolist() == [
        ["A<&>", "**100.00 ± 0.00 (2)**", "50.00 ± – (1)"],
        ["B", "99.00 ± – (1)", "**60.00 ± – (1)**"],
        ["C", "missing", "missing"],
    ]
    assert tables["Test F1 (%), word scoring"].values.tolist() == [
        ["A<&>", "20.00 ± 0.00 (2)", "50.00 ± – (1)"],
        ["B", "**30.00 ± – (1)**", "**60.00 ± – (1)**"],
        ["C", "missing", "missing"],
    ]
    unmarked = {title: frame.map(lambda c: c.strip("*")) for title, frame in tables.items()}
    for title, frame in markdown_tables(md.read_text()).items():  # the same cells as the Markdown, nothing else
        pd.testing.assert_frame_equal(unmarked[title], frame)
    assert list(tables) == list(markdown_tables(md.read_text()))

    comments = [line for line in tex.read_text().splitlines() if line.startswith("%")]
    assert (
        comments[1]
        == "% mean +- sample standard deviation over 1/2 seed(s); --: no run; bold: the best mean of each column"
    )
    latex = tex.read_text().splitlines()[len(comments) :]
    assert latex[:4] == ["\\begin{tabular}{lcc}", "\\toprule", "Model & d\\_1 & d2 \\\\", "\\midrule"]
    assert latex[4:7] == [
        "A<\\&> & \\bfseries 100.00 $\\pm$ 0.00 & 50.00 \\\\",
        "B & 99.00 & \\bfseries 60.00 \\\\",
        "C & -- & -- \\\\",
    ]
    assert latex[7:] == ["\\bottomrule", "\\end{tabular}"]


def test_runs_on_part_of_a_dataset_are_marked_and_not_compared_with_published_values(tmp_path):
    """max_train_sentences / max_eval_sentences make a quick run: its F1 is not the published protocol's."""
    paths = [write_run(tmp_path, "DistilBioBERT", "NCBI-disease", s, 0.5, 0.4) for s in (1, 2)]
    metrics = json.loads(paths[1].read_text())
    paths[1].write_text(json.dumps({**metrics, "cut_splits": ["train", "test"]}))
    paths.append(write_run(tmp_path, "BioBERT", "NCBI-disease", 1, 0.9, 0.8))  # written before cut_splits existed
    out = write_beside_published(tmp_path, paths, ["BioBERT", "DistilBioBERT"])
    md, csv, tex = out["md"], out["csv"], out["tex"]
    text = md.read_text()
    tables = markdown_tables(text)
    assert tables["Test F1 (%), paper scoring"].values.tolist() == [
        ["BioBERT", "90.00 ± – (1)"],
        ["DistilBioBERT", "50.00 ± 0.00 (2) †"],
    ]
    assert "†: trained or scored on part of the dataset" in text
    assert tables["Against published values, word scoring"].values.tolist() == [
        ["BioBERT", "NCBI-disease", "80.00 ± – (1)", "89.13", "-9.13", "BLURB"],
        ["DistilBioBERT", "NCBI-disease", "40.00 ± 0.00 (2) †", "85.00", "not comparable (test, train cut)", "BLURB"],
    ]
    tidy = pd.read_csv(csv, keep_default_na=False)
    assert set(tidy.query("model == 'DistilBioBERT' and statistic != 'published'")["cut"]) == {"test, train"}
    assert tidy.query("statistic == 'diff'")[["model", "mode"]].values.tolist() == [["BioBERT", "word"]]
    assert "DistilBioBERT & 50.00 $\\pm$ 0.00$^\\dagger$ \\\\" in tex.read_text()


def test_a_seed_counted_twice_or_a_value_published_twice_is_one_line(tmp_path):
    first = write_run(tmp_path, "A", "d1", 1, 0.5, 0.4)
    moved = write_run(tmp_path, "A", "d1", 2, 0.5, 0.4)
    moved.write_text(json.dumps({**json.loads(moved.read_text()), "seed": 3}))  # finetune-ner --seed 3 into seed2/
    with pytest.raises(ner_f1.InputError, match="holds a run of seed 3, not of its folder's seed2"):
        ner_f1.collect([first, moved])
    again = tmp_path / "copy" / "results" / "ner" / "A" / "d1" / "seed1" / "metrics.json"
    again.parent.mkdir(parents=True)
    again.write_text(first.read_text())
    with pytest.raises(ner_f1.InputError, match=f"a second run of A on d1 with seed 1 \\(the first: {first}\\)"):
        ner_f1.collect([first, again])

    reference = tmp_path / "published.tsv"
    reference.write_text(PUBLISHED + "NCBI-disease\tDistilBioBERT\tpaper\tF1\t88.10\tanother source\n")
    with pytest.raises(ner_f1.InputError, match="line 6: a second F1 of DistilBioBERT on NCBI-disease, paper scoring"):
        ner_f1.read_published(reference)
    reference.write_text(PUBLISHED + "BC2GM\tDistilBioBERT\tpaper\tF1\t\tnot yet published\n")
    assert "BC2GM" not in set(ner_f1.read_published(reference)["dataset"])  # an empty value is unknown, not nan


def test_differences_and_ties_as_shown(tmp_path):
    """A difference that rounds to zero is +0.00, not -0.00; means equal to two decimals are all bold."""
    paths = [write_run(tmp_path, "DistilBioBERT", "NCBI-disease", 1, 0.879299, 0.5)]
    paths.append(write_run(tmp_path, "BioBERT", "NCBI-disease", 1, 0.879301, 0.5))
    out = write_beside_published(tmp_path, paths, ["BioBERT", "DistilBioBERT"])
    md, page = out["md"], out["html"]
    tables = markdown_tables(md.read_text())
    assert tables["Against published values, paper scoring"]["Difference"].tolist() == ["+0.00"]
    assert html_tables(page.read_text())["Test F1 (%), paper scoring"]["NCBI-disease"].tolist() == [
        "**87.93 ± – (1)**",
        "**87.93 ± – (1)**",
    ]


def test_seeds_of_one_cell_trained_with_other_settings_are_one_line(tmp_path):
    """A run by hand with another learning rate, dropped into results/ner, would move the mean without a word."""
    settings = {"learning_rate": 5e-5, "epochs": 5, "precision": "bf16", "threads": None}
    paths = [write_run(tmp_path, "A", "d1", seed, 0.5, 0.4) for seed in (1, 2, 3, 4)]
    for path, changes in zip(paths, [{}, {"threads": 2, "logging_steps": 10}, {"learning_rate": 3e-3}, None]):
        if changes is not None:  # the last: a run from before metrics.json recorded its hparams
            path.write_text(json.dumps({**json.loads(path.read_text()), "hparams": {**settings, **changes}}))
    assert len(ner_f1.collect(paths[:2] + paths[3:])) == 3 * len(SCORINGS)  # speed-only settings may differ
    with pytest.raises(ner_f1.InputError, match=f"other settings than {paths[0]} \\(learning_rate 0.003 vs 5e-05\\)"):
        ner_f1.collect(paths)
