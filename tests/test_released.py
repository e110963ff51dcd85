"""The released-checkpoint path: a config whose rows are published models (here local folders the tests build:
bert, distilbert and mobilebert types, cased and uncased tokenizers) runs through Snakemake with no pre-training and
produces both protocols' tables beside the published values."""

import json
import re
import shutil
import statistics

import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workflow
from conftest import run_snakemake as snakemake
from test_pretrained import tiny_model
from test_workflow import job_counts

from compact_biomed import demo


def test_released_config_plans_no_pretraining_and_a_job_per_row_dataset_seed():
    result = snakemake("-n", "--configfile", "config/released.yaml", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    config = yaml.safe_load((REPO / "config/released.yaml").read_text())
    rows, datasets, seeds = config["models"], config["ner"]["datasets"], config["ner"]["seeds"]
    assert len(rows) >= 8 and all("pretrained" in row for row in rows.values())
    assert "pretrain" not in counts and "teacher" not in counts and "fetch_pubmed" not in counts
    assert counts["fetch_pretrained"] == len(rows)
    assert counts["finetune_ner"] == len(rows) * len(datasets) * len(seeds) >= 200
    revisions = {name: row["pretrained"]["revision"] for name, row in rows.items()}
    assert revisions["TinyBioBERT"] == "e529c7b"  # the final upload, not the 50k/85k ones


def test_comparison_rows_add_to_the_released_ones():
    result = snakemake("-n", "--configfile", "config/released.yaml", "config/compare.yaml", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    compare = yaml.safe_load((REPO / "config/compare.yaml").read_text())["models"]
    released = yaml.safe_load((REPO / "config/released.yaml").read_text())["models"]
    assert job_counts(result.stdout)["fetch_pretrained"] == len(released) + len(compare)


def test_trained_and_published_rows_mix_in_one_config(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())  # the demo: six trained rows
    config["models"]["Mine"] = {"pretrained": {"path": str(tiny_model(tmp_path / "mine"))}}
    (tmp_path / "mixed.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(tmp_path / "mixed.yaml"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    trained = len(config["models"]) - 1
    assert counts["pretrain"] == trained and counts["fetch_pretrained"] == 1
    assert counts["finetune_ner"] == (1 + trained + 1) * len(config["ner"]["datasets"]) * len(config["ner"]["seeds"])


def test_a_local_row_changed_in_place_is_fetched_again(tmp_path):
    """Weights replaced inside the same folder (cp, save_pretrained) leave the folder's own mtime as it was: the
    row's files are the rule's inputs, so its results are redone rather than kept from the old weights."""
    workdir = copy_workflow(tmp_path / "run")
    mine = tiny_model(tmp_path / "mine")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["models"] = {"Mine": {"pretrained": {"path": str(mine)}}}
    (workdir / "mine.yaml").write_text(yaml.safe_dump(config))
    target = ["results/pretrained/Mine", "--configfile", "mine.yaml", "--cores", "1"]
    assert snakemake(*target, cwd=workdir).returncode == 0
    assert "Nothing to be done" in snakemake(*target, "-n", cwd=workdir).stdout
    other = tiny_model(tmp_path / "other", "distilbert")
    weights = next(mine.glob("*.safetensors"))
    shutil.copyfile(next(other.glob("*.safetensors")), weights)  # in place: the folder's mtime does not change
    shutil.copyfile(other / "config.json", mine / "config.json")
    result = snakemake(*target, "-n", cwd=workdir)
    assert "Nothing to be done" not in result.stdout, result.stdout[-2000:]
    assert job_counts(result.stdout)["fetch_pretrained"] == 1


def test_a_teacher_section_without_trained_rows_adds_no_row(tmp_path):
    config = yaml.safe_load((REPO / "config/released.yaml").read_text())
    config["teacher"] = {"name": "Teacher", "hub_id": "dmis-lab/biobert-base-cased-v1.2"}  # left in, unused
    (tmp_path / "with-teacher.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(tmp_path / "with-teacher.yaml"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stdout)["finetune_ner"] == len(config["models"]) * 5 * 5  # the released rows only


ROWS = {
    "CasedBERT": ("bert", False),
    "CasedDistilBERT": ("distilbert", False),
    "UncasedMobileBERT": ("mobilebert", True),
}


@pytest.mark.slow
def test_released_style_rows_run_end_to_end_with_both_protocols_beside_published_values(tmp_path):
    workdir = copy_workflow(tmp_path / "run")
    models = {name: tiny_model(tmp_path / "hub-copies" / name, *kind) for name, kind in ROWS.items()}
    demo.write_ner_dataset(tmp_path / "ner" / "chem", "chem", seed=0, n_train=120, n_dev=20, n_test=60)
    published = tmp_path / "published.tsv"
    published.write_text(
        "dataset\tmodel\tscoring\tmetric\tvalue\tsource\n"
        "chem\tCasedBERT\tpaper\tF1\t90.00\tpaper table\n"
        "chem\tUncasedMobileBERT\tword\tF1\t80.00\tBLURB table\n"
    )
    config = yaml.safe_load((REPO / "config/released.yaml").read_text())
    config["models"] = {name: {"pretrained": {"path": str(path)}} for name, path in models.items()}
    config["ner"].update(
        data_dir=str(tmp_path / "ner"), archive_url=None, datasets=["chem"], seeds=[1, 2], published=str(published)
    )
    config["ner"]["hparams"].update(learning_rate=3e-3, epochs=2, max_length=64)
    config.update(threads=1, model_stats={"batch_size": 32, "min_seconds": 0.05})
    (workdir / "mine.yaml").write_text(yaml.safe_dump(config))

    result = snakemake("--cores", "2", "--configfile", "mine.yaml", cwd=workdir, timeout=1200)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    assert "rule pretrain" not in result.stdout + result.stderr

    def mean_f1(model, mode):
        runs = workdir.glob(f"results/ner/{model}/chem/seed*/metrics.json")
        return statistics.fmean(100 * json.loads(p.read_text())["test"][mode]["f1"] for p in runs)

    tidy = pd.read_csv(workdir / "results/tables/ner_f1.csv").set_index(["model", "mode", "statistic"])
    assert tidy.loc[("CasedBERT", "paper", "diff"), "value"] == pytest.approx(
        mean_f1("CasedBERT", "paper") - 90, abs=1e-3
    )
    assert tidy.loc[("UncasedMobileBERT", "word", "diff"), "value"] == pytest.approx(
        mean_f1("UncasedMobileBERT", "word") - 80, abs=1e-3
    )
    assert ("CasedDistilBERT", "paper", "published") not in tidy.index  # nothing published: no value, no zero

    table = (workdir / "results/tables/ner_f1.md").read_text()
    assert re.search(
        r"^\| CasedBERT +\| chem +\| [\d.]+ ± [\d.]+ \(2\) +\| 90.00 +\| [+-][\d.]+ +\| paper table +\|$",
        table,
        re.MULTILINE,
    ), table
    assert re.search(
        r"^\| UncasedMobileBERT +\| chem +\| [\d.]+ ± [\d.]+ \(2\) +\| 80.00 +\| [+-][\d.]+ +"
        r"\| BLURB table +\|$",
        table,
        re.MULTILINE,
    ), table
    for name, path in models.items():  # provenance: the folder and the digest of its weights
        assert re.search(
            rf"^\| {name} +\| {re.escape(str(path.resolve()))} \(weights sha256 [0-9a-f]{{12}}\) +\|$",
            table,
            re.MULTILINE,
        ), table
    stats = pd.read_csv(workdir / "results/tables/model_stats.csv")
    assert list(stats["model"]) == list(ROWS)  # every row has its size and speed
    assert not (workdir / "results/figures/pretrain_loss.png").exists()
