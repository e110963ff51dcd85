"""The report's pieces: HTML tables, the F1 and loss figures, model size/speed, corpus and shard tables, and the
Snakemake report of the demo rendered in headless Chromium."""

import base64
import json
import math
import re
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_snakemake
from test_tables import html_tables, markdown_tables, write_run

from compact_biomed import figures
from compact_biomed.io import InputError, read_json
from compact_biomed.ner import SCORINGS
from compact_biomed.tables import data_stats, model_stats, ner_f1

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM = "/usr/bin/chromium"


# ---------------------------------------------------------------------------------------------------------------
# F1 table (HTML) and figure


@pytest.fixture
def tidy(tmp_path):
    """Model A: three seeds on d1; B: one seed on d1; C: no runs; nobody ran d2. Word F1 is half the paper F1."""
    paths = [write_run(tmp_path, "A", "d1", s, f, f / 2) for s, f in [(1, 0.80), (2, 0.84), (3, 0.90)]]
    paths.append(write_run(tmp_path, "B", "d1", 1, 0.5, 0.4))
    csv = tmp_path / "t.csv"
    ner_f1.write_tables(
        paths, tmp_path / "t.md", csv, ["A", "B", "C"], ["d1", "d2"], html_path=tmp_path / "t.html", mode="paper"
    )
    return pd.read_csv(csv)


def test_html_table_shows_the_markdown_cells(tmp_path, tidy):
    markdown, page = markdown_tables((tmp_path / "t.md").read_text()), html_tables((tmp_path / "t.html").read_text())
    assert list(page) == list(markdown) == ["Test F1 (%), paper scoring", "Test F1 (%), word scoring"]
    for title, cells in markdown.items():
        assert cells["Model"].tolist() == ["A", "B", "C"]
        pd.testing.assert_frame_equal(page[title].map(lambda c: c.strip("*")), cells)
    assert page["Test F1 (%), paper scoring"].loc[0, "d1"].startswith("**")  # A: the best mean on d1


@pytest.mark.parametrize("mode,scale", [("paper", 1.0), ("word", 0.5)])
def test_errorbars_are_mean_and_sample_sd_over_seeds(tidy, mode, scale):
    bars = figures.f1_errorbars(tidy, ["A", "B", "C"], ["d1", "d2"], mode).set_index(["model", "dataset"])
    f1 = [scale * v for v in (80, 84, 90)]
    assert bars.loc[("A", "d1"), "mean"] == pytest.approx(statistics.fmean(f1), abs=1e-3)
    assert bars.loc[("A", "d1"), "sd"] == pytest.approx(statistics.stdev(f1), abs=1e-3)
    assert bars.loc[("A", "d1"), "n"] == 3
    assert bars.loc[("B", "d1"), "n"] == 1 and math.isnan(bars.loc[("B", "d1"), "sd"])  # one seed: no spread
    for missing in [("C", "d1"), ("A", "d2")]:
        assert bars.loc[missing, "n"] == 0 and math.isnan(bars.loc[missing, "mean"])
    assert list(bars.index) == [(m, d) for m in "ABC" for d in ("d1", "d2")]  # table order, every pair


def test_f1_figure_draws_both_modes_with_errorbars_and_marks_missing(tidy):
    figure = figures.f1_figure(tidy, ["A", "B", "C"], ["d1", "d2"])
    panels = figure.axes  # rows: protocols; columns: datasets
    titles = [f"{d}\n{figures.SCORING_LABELS[m]}" for m in SCORINGS for d in ("d1", "d2")]
    assert [ax.get_title() for ax in panels] == titles
    for ax, scale in zip(panels[::2], (1.0, 0.5)):
        assert ax.get_ylabel() == "Test F1 (%)"
        a_point = ax.containers[0]  # model A on d1: the mean, one sample sd either side
        ((_x, y),) = a_point.lines[0].get_xydata()
        assert y == pytest.approx(scale * statistics.fmean([80, 84, 90]), abs=1e-3)
        ((segment,),) = [lines.get_segments() for lines in a_point.lines[2]]
        assert segment[1][1] - segment[0][1] == pytest.approx(2 * scale * statistics.stdev([80, 84, 90]), abs=1e-3)
        assert sum(text.get_text() == "n/a" for text in ax.texts) == 1  # C never ran d1: marked, not a zero
    assert all(sum(t.get_text() == "n/a" for t in ax.texts) == 3 for ax in panels[1::2])  # nobody ran d2
    legend = figure.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["A", "B", "C"]


def test_f1_axis_shows_a_one_point_difference_and_the_published_value(tmp_path):
    paths = [
        write_run(tmp_path, m, "d1", s, f, f)
        for m, runs in {"A": [0.870, 0.872], "B": [0.880, 0.881]}.items()
        for s, f in enumerate(runs, 1)
    ]
    published = tmp_path / "published.tsv"
    published.write_text("dataset\tmodel\tscoring\tmetric\tvalue\tsource\nd1\tA\tpaper\tF1\t88.60\tPWC\n")
    csv = tmp_path / "t.csv"
    ner_f1.write_tables(paths, tmp_path / "t.md", csv, ["A", "B"], ["d1"], published=published, mode="paper")
    figure = figures.f1_figure(pd.read_csv(csv), ["A", "B"], ["d1"])
    paper_panel = figure.axes[0]
    low, high = paper_panel.get_ylim()
    assert high - low <= 6  # the ~1-point gap between A and B spans a sixth of the axis or more, not 1% of 0-100
    assert low < 87.0 and 88.6 < high  # every mean and the published value on the axis
    (marker,) = [c for c in paper_panel.collections if c.get_label() == "published value"]
    assert marker.get_offsets()[0].tolist() == [0, pytest.approx(88.6)]  # drawn at model A, same protocol only
    assert not [c for c in figure.axes[1].collections if c.get_label() == "published value"]  # none at word level


def test_plot_f1_writes_a_png(tmp_path, tidy):
    tidy.to_csv(tmp_path / "tidy.csv", index=False)
    figures.plot_f1(tmp_path / "tidy.csv", tmp_path / "f1.png", ["A", "B", "C"], ["d1", "d2"])
    data = (tmp_path / "f1.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 10_000


def test_a_row_named_like_a_missing_value_keeps_its_points(tmp_path):
    """The schema allows a row named NA (or null, None, nan): read back from the CSV it is still that row."""
    paths = [write_run(tmp_path, name, "d1", 1, 0.9, 0.8) for name in ("NA", "None")]
    csv = tmp_path / "t.csv"
    ner_f1.write_tables(paths, tmp_path / "t.md", csv, ["NA", "None"], ["d1"], mode="paper")
    bars = figures.f1_errorbars(figures.read_tidy(csv), ["NA", "None"], ["d1"], "paper")
    assert bars["mean"].tolist() == [pytest.approx(90.0), pytest.approx(90.0)] and bars["sd"].isna().all()


# ---------------------------------------------------------------------------------------------------------------
# Pre-training loss curves


def write_log(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_loss_figure_one_panel_per_model_one_line_per_term(tmp_path):
    distilled = write_log(
        tmp_path / "d/train_log.jsonl",
        [
            {"step": s, "lr": 1e-4, "loss": 30 - s, "loss_mlm": 20 - s, "loss_kl": 2.0 / s, "loss_cosine": 0.3}
            for s in (10, 5, 15)
        ],
    )  # out of order on purpose
    continual = write_log(
        tmp_path / "c/train_log.jsonl",
        [{"step": s, "lr": 1e-4, "loss": 7.0 - s / 10, "loss_mlm": 7.0 - s / 10} for s in (5, 10)],
    )
    figure = figures.loss_figure(
        {"Distil": figures.read_train_log(distilled), "Bio": figures.read_train_log(continual)}
    )
    distil_ax, bio_ax = [ax for ax in figure.axes if ax.get_visible()]
    assert [line.get_label() for line in distil_ax.lines] == ["total (weighted)", "cosine", "kl", "mlm"]
    assert list(distil_ax.lines[0].get_xdata()) == [5, 10, 15]  # sorted by step
    assert distil_ax.get_yscale() == "log" and distil_ax.get_xlabel() == "optimizer step"
    assert [line.get_label() for line in bio_ax.lines] == ["mlm (= total)"]  # drawn once, not twice
    figures.save(figure, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes().startswith(PNG_MAGIC)


def test_loss_panel_is_linear_when_a_term_is_not_positive(tmp_path):
    log = figures.read_train_log(
        write_log(tmp_path / "l.jsonl", [{"step": 1, "loss": 1.0, "loss_a": 0.0, "loss_b": 1.0}])
    )
    figure = figures.loss_figure({"M": log}, columns=1)
    assert figure.axes[0].get_yscale() == "linear"


def test_empty_train_log_is_one_line_error(tmp_path):
    with pytest.raises(InputError, match="train_log.jsonl: no logging steps"):
        figures.read_train_log(write_log(tmp_path / "train_log.jsonl", []))


# ---------------------------------------------------------------------------------------------------------------
# Model size and speed


def write_ner_test_set(tmp_path):
    path = tmp_path / "ner/test.tsv"
    path.parent.mkdir()
    sentences = [["Aspirin", "reduces", "fever", "."], ["The", "BRCA1", "gene", "is", "associated", "."]] * 10
    tags = [["B", "O", "O", "O"], ["O", "B", "I", "O", "O", "O"]] * 10
    path.write_text("\n\n".join("\n".join(f"{w}\t{t}" for w, t in zip(s, g)) for s, g in zip(sentences, tags)))
    return path, len(sentences)


def bert_encoder_parameters(vocab, hidden, layers, intermediate, positions, type_vocab=2):
    """BertModel without pooler, counted from the architecture: (embedding tables, everything else)."""
    tables = (vocab + positions + type_vocab) * hidden
    embedding_norm = 2 * hidden
    attention = 4 * (hidden * hidden + hidden) + 2 * hidden  # Q, K, V, output + LayerNorm
    feed_forward = (hidden * intermediate + intermediate) + (intermediate * hidden + hidden) + 2 * hidden
    return tables, embedding_norm + layers * (attention + feed_forward)


def test_model_stats_on_a_tiny_bert(tmp_path, tiny_bert_dir):
    test_tsv, n_sentences = write_ner_test_set(tmp_path)
    out = tmp_path / "stats/tiny.json"
    (stats,) = model_stats.write_all(
        [tiny_bert_dir],
        {"toy": test_tsv, "toy2": test_tsv},
        [out],
        batch_size=8,
        max_length=64,
        min_seconds=0.05,
        threads=1,
    )
    assert json.loads(out.read_text()) == stats and stats["rounds"] == 2

    vocab = json.loads((tiny_bert_dir / "config.json").read_text())["vocab_size"]  # what the tokenizer reached
    tables, rest = bert_encoder_parameters(vocab=vocab, hidden=32, layers=4, intermediate=64, positions=128)
    assert stats["embedding_parameters"] == tables
    assert stats["parameters_without_embeddings"] == rest
    assert stats["parameters"] == tables + rest

    files = [p for p in tiny_bert_dir.rglob("*") if p.is_file()]
    assert stats["disk_bytes"] == sum(p.stat().st_size for p in files) > 0
    assert 0 < stats["weight_bytes"] < stats["disk_bytes"]

    for speed in stats["speed"].values():
        assert speed["sentences"] == n_sentences and speed["passes"] >= 2 and speed["seconds"] >= 0.1  # two rounds
        assert speed["sentences_per_second"] == pytest.approx(speed["passes"] * n_sentences / speed["seconds"], 1e-3)
    assert stats["sentences_per_second"] > 0
    assert stats["device_type"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert stats["threads"] == 1


def test_model_stats_give_no_row_the_speed_drift_of_its_place(tmp_path, monkeypatch):
    """Each measurement a little faster than the one before (a process warming up): identical models measured in
    two rounds of opposite order come out equal; measured once, the last would be the fastest."""
    calls = []

    def drifting(model_dir, test_sets, **settings):
        calls.append(model_dir)
        seconds = 1.0 - 0.1 * len(calls)
        speeds = {"toy": {"sentences": 10, "windows": 10, "passes": 1, "seconds": seconds}}
        return {"model_dir": model_dir, "speed": speeds, "sentences_per_second": 10 / seconds}

    monkeypatch.setattr(model_stats, "measure", drifting)
    outs = [tmp_path / f"{name}.json" for name in "ABC"]
    stats = model_stats.write_all(["A", "B", "C"], {"toy": "test.tsv"}, outs, batch_size=8)
    assert calls == ["A", "B", "C", "C", "B", "A"]
    assert [s["sentences_per_second"] for s in stats] == [round(20 / 1.3, 2)] * 3  # 1.3 s each: 0.9+0.4, 0.8+0.5, ...
    assert [read_json(out)["model_dir"] for out in outs] == ["A", "B", "C"]
    assert stats[0]["round_speeds"] == pytest.approx([10 / 0.9, 10 / 0.4])  # A: measured first, then last


def test_a_model_whose_two_rounds_disagree_is_marked_unreliable(tmp_path):
    """On a busy machine a model measured 3.9x another of its size: the table stated it as a fact."""
    paths = [fake_stats(tmp_path / "A.json", 1_000_000, 100.0), fake_stats(tmp_path / "B.json", 1_000_000, 100.0)]
    for path, rounds in zip(paths, ([95.0, 105.0], [60.0, 140.0])):
        path.write_text(json.dumps({**read_json(path), "round_speeds": rounds}))
    md, csv, page = tmp_path / "m.md", tmp_path / "m.csv", tmp_path / "m.html"
    model_stats.write_table(paths, md, csv, page, models=["A", "B"], reference="A")
    (table,) = markdown_tables(md.read_text()).values()
    assert table[["Speed (sentences/s)", "Speed vs A"]].values.tolist() == [["100", "1.00×"], ["100‡", "1.00×‡"]]
    assert "‡: its two measuring rounds differ by more than 20%" in md.read_text()
    assert pd.read_csv(csv)["sentences_per_second_round2"].tolist() == [105.0, 140.0]


def test_tied_embedding_counts_once():
    class Tied(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(10, 4)
            self.decoder = torch.nn.Linear(4, 10, bias=False)
            self.decoder.weight = self.embed.weight

    counts = model_stats.count_parameters(Tied())
    assert counts == {"parameters": 40, "embedding_parameters": 40, "parameters_without_embeddings": 0}


def fake_stats(path, parameters, speed, datasets=("d1", "d2")):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps(
            {
                "parameters": parameters,
                "embedding_parameters": parameters // 4,
                "parameters_without_embeddings": parameters - parameters // 4,
                "disk_bytes": parameters * 4 + 1000,
                "weight_bytes": parameters * 4,
                "sentences_per_second": speed,
                "device": "cpu (x86_64)",
                "threads": 1,
                "batch_size": 64,
                "speed": {d: {"sentences_per_second": speed * (i + 1)} for i, d in enumerate(datasets)},
            }
        )
    )
    return path


def test_model_stats_table_order_units_and_speedup(tmp_path):
    paths = [
        fake_stats(tmp_path / "TinyBioBERT.json", 15_000_000, 400.0),
        fake_stats(tmp_path / "BioBERT.json", 108_000_000, 100.0),
    ]
    md, csv, page = tmp_path / "m.md", tmp_path / "m.csv", tmp_path / "m.html"
    model_stats.write_table(paths, md, csv, page, models=["BioBERT", "TinyBioBERT"], reference="BioBERT")
    text = md.read_text()
    (table,) = markdown_tables(text).values()
    assert table.columns.tolist() == [
        "Model",
        "Parameters",
        "Without embeddings",
        "Disk (MB)",
        "Speed (sentences/s)",
        "Speed vs BioBERT",
    ]
    assert table.values.tolist() == [
        ["BioBERT", "108.0M", "81.0M", "432.0", "100", "1.00×"],  # config order,
        ["TinyBioBERT", "15.0M", "11.2M", "60.0", "400", "4.00×"],
    ]  # not file order
    frame = pd.read_csv(csv)
    assert frame["model"].tolist() == ["BioBERT", "TinyBioBERT"]
    assert frame["sentences_per_second_d2"].tolist() == [200.0, 800.0]
    pd.testing.assert_frame_equal(html_tables(page.read_text())["Model size and inference speed"], table)
    assert "DEMO" not in text
    model_stats.write_table(paths, md, csv, page, models=["BioBERT", "TinyBioBERT"], demo=True)
    assert "tiny random models" in md.read_text() and "tiny random models" in page.read_text()


def test_model_stats_of_an_unknown_model_is_an_error(tmp_path):
    with pytest.raises(InputError, match="not in the table"):
        model_stats.write_table(
            [fake_stats(tmp_path / "X.json", 10, 1.0)],
            tmp_path / "m.md",
            tmp_path / "m.csv",
            tmp_path / "m.html",
            models=["A"],
        )


# ---------------------------------------------------------------------------------------------------------------
# Corpus and shard statistics


def test_data_stats_tables(tmp_path):
    corpus = tmp_path / "corpus_stats.json"
    corpus.write_text(
        json.dumps(
            {
                "characters": 144437,
                "citations_parsed": 500,
                "deleted": 1,
                "deletions_listed": 1,
                "duplicates_replaced": 0,
                "empty_text": 0,
                "files": 2,
                "text_format": "title_abstract",
                "records": 499,
                "title_only": 73,
                "with_abstract": 426,
                "per_file": [
                    {"citations": 250, "deletions": 0, "file": "a.xml.gz"},
                    {"citations": 250, "deletions": 1, "file": "b.xml.gz"},
                ],
            }
        )
    )
    manifests = []
    for owner, tokens in (("teacher", 20000), ("BioTinyBERT", 23506)):
        path = tmp_path / "shards" / owner / "manifest.json"
        path.parent.mkdir(parents=True)
        shard = {"max_length": 64, "mode": "one_citation", "num_shards": 2, "rows": 250, "shard": 0}
        path.write_text(
            json.dumps(
                {
                    "shards": [shard],
                    "totals": {"shards": 2, "rows": 499, "tokens": tokens, "truncated_tokens": 1736, "sha256": "x"},
                }
            )
        )
        manifests.append(path)
    data_stats.write_table(corpus, manifests, tmp_path / "d.md", tmp_path / "d.html", teacher="BioBERT")
    tables = markdown_tables((tmp_path / "d.md").read_text())
    corpus = tables["PubMed corpus"].set_index("Statistic")["Value"]
    assert corpus["Records kept"] == "499" and corpus["Characters"] == "144,437"
    assert tables["Parsed files"].values.tolist() == [["a.xml.gz", "250", "0", "0"], ["b.xml.gz", "250", "1", "0"]]
    assert tables["Tokenisation shards"].values.tolist() == [  # the order given
        ["BioBERT (teacher)", "2", "499", "20,000", "40.1", "1,736", "one_citation / 64"],
        ["BioTinyBERT", "2", "499", "23,506", "47.1", "1,736", "one_citation / 64"],
    ]
    page = html_tables((tmp_path / "d.html").read_text())
    assert list(page) == list(tables)
    for title, cells in tables.items():
        pd.testing.assert_frame_equal(page[title], cells)


# ---------------------------------------------------------------------------------------------------------------
# The Snakemake report of the demo, rendered in a real browser


def embedded_results(report_html: str) -> dict[str, dict]:
    """{file name: {"content", "caption"}} of every result the report embeds (its `results` object holds base64
    data URIs and the captions rendered to HTML)."""
    results = json.loads(re.search(r"var results = (\{.*?\});\s*</script>", report_html, re.DOTALL)[1])
    return {
        entry["name"]: {
            "content": base64.b64decode(entry["data_uri"].split("base64,", 1)[1]),
            "caption": entry["caption"],
        }
        for entry in results.values()
    }


def chromium(*args, profile):
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        *args,
    ]
    return subprocess.run(command, check=False, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def demo_report(demo_workdir):
    result = run_snakemake("--report", "report.html", cwd=demo_workdir, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return demo_workdir / "report.html"


@pytest.mark.slow
def test_report_embeds_every_result_with_its_caption(demo_report):
    page = demo_report.read_text()
    embedded = embedded_results(page)
    expected = {
        "ner_f1.html",
        "ner_f1.csv",
        "ner_f1.png",
        "pretrain_loss.png",
        "data_stats.html",
        "model_stats.html",
        "model_stats.csv",
    }
    assert expected <= set(embedded)
    f1 = html_tables(embedded["ner_f1.html"]["content"].decode())["Test F1 (%), paper scoring"].set_index("Model")
    sizes = html_tables(embedded["model_stats.html"]["content"].decode())["Model size and inference speed"]
    models = [
        "BioBERT",
        "DistilBioBERT",
        "CompactBioBERT",
        "TinyBioBERT",
        "BioDistilBERT",
        "BioTinyBERT",
        "BioMobileBERT",
    ]
    assert f1.index.tolist() == sizes["Model"].tolist() == models
    for model in models:
        assert all(re.fullmatch(r"[\d.]+ ± [\d.]+ \(5\)", cell.strip("*")) for cell in f1.loc[model]), model
    assert (f1.map(lambda cell: cell.startswith("**")).sum() >= 1).all()  # each dataset's best mean in bold
    for figure in ("ner_f1.png", "pretrain_loss.png"):
        assert embedded[figure]["content"].startswith(PNG_MAGIC) and len(embedded[figure]["content"]) > 20_000
    for name in expected:
        assert len(embedded[name]["caption"]) > 100, name  # every result explained
    assert "seeds 1, 2, 3, 4, 5" in embedded["ner_f1.html"]["caption"]  # captions filled in from the config


@pytest.mark.slow
def test_report_renders_in_headless_chromium(demo_report, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not installed (make test installs Debian's chromium when run as root)")
    url = demo_report.resolve().as_uri()
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", url, profile=tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-3000:]
    rendered = dom.stdout
    assert 'id="app"' in rendered and "compact-biomed" in rendered  # the workflow description, rendered
    for category in ("NER results", "Pre-training", "Data", "Models"):
        assert category in rendered
    assert "This is the offline demo" in rendered

    screenshot = tmp_path / "report.png"
    shot = chromium(
        "--virtual-time-budget=10000",
        f"--screenshot={screenshot}",
        "--window-size=1400,2000",
        url,
        profile=tmp_path / "profile-shot",
    )
    assert shot.returncode == 0 and screenshot.exists(), shot.stderr[-3000:]
    from PIL import Image

    with Image.open(screenshot) as image:
        assert image.size == (1400, 2000)
        pixels = np.asarray(image.convert("RGB"))
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, the rule graph and the menu; a blank or error page has a handful
    assert (pixels.min(axis=2) < 128).mean() > 0.005  # enough dark pixels: text is drawn
