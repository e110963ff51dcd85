"""The steps from the command line, without Snakemake, as the README shows them; what they refuse to touch."""

import gzip
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, copy_workflow, run_snakemake, shared_path

from compact_biomed.cli import load_config, main
from compact_biomed.io import OUTPUT_MARKER, read_json


def test_pubmed_steps_from_the_command_line(tmp_path):
    sample = shared_path("pubmed", "pubmed25n1274.xml.gz")
    raw, parsed = tmp_path / "raw", tmp_path / "parsed"
    assert main(["fetch-pubmed", "pubmed25n1274", "--out-dir", str(raw), "--local-dir", str(sample.parent)]) == 0
    assert main(["parse-pubmed", str(raw / "pubmed25n1274.xml.gz"), "--out-dir", str(parsed)]) == 0
    corpus, stats = tmp_path / "corpus.parquet", tmp_path / "stats.json"
    assert (
        main(["build-corpus", str(parsed / "pubmed25n1274.parquet"), "--out", str(corpus), "--stats", str(stats)]) == 0
    )
    assert pq.read_metadata(corpus).num_rows == read_json(stats)["records"] == 30


def test_bad_input_gives_one_line_and_exit_status_1(tmp_path, capsys):
    truncated = tmp_path / "pubmed25n0001.xml.gz"
    truncated.write_bytes(gzip.compress(b"<PubmedArticleSet><PubmedArticle>" * 50)[:60])
    assert main(["parse-pubmed", str(truncated), "--out-dir", str(tmp_path / "parsed")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("compact-biomed parse-pubmed: error: ") and str(truncated) in error
    assert error.count("\n") == 1
    assert not (tmp_path / "parsed" / "pubmed25n0001.parquet").exists()


def test_parse_pubmed_by_hand_checks_the_md5_sidecar_as_the_workflow_does(tmp_path, capsys):
    from compact_biomed import demo

    xml = tmp_path / "pubmed25n0001.xml.gz"
    demo.write_pubmed_file(xml, first_pmid=1, count=5, seed=0)
    Path(f"{xml}.md5").write_text(f"MD5({xml.name})= {'0' * 32}\n")
    assert main(["parse-pubmed", str(xml), "--out-dir", str(tmp_path / "parsed")]) == 1
    assert "md5 mismatch: sidecar says 00000000" in one_error_line(capsys, "parse-pubmed", xml)
    assert not (tmp_path / "parsed").exists()


def test_file_outputs_refuse_an_existing_file_unless_told_to_overwrite(tmp_path, capsys):
    """The CLI cannot tell a file it wrote from one of the user's: an existing output file is one line and stays as
    it was, before any work; `--overwrite` replaces it."""
    from compact_biomed import demo

    xml = tmp_path / "pubmed25n0001.xml.gz"
    demo.write_pubmed_file(xml, first_pmid=1, count=5, seed=0)
    parsed, corpus, stats = tmp_path / "parsed", tmp_path / "corpus.parquet", tmp_path / "notes.json"
    assert main(["parse-pubmed", str(xml), "--out-dir", str(parsed)]) == 0
    stats.write_text("my notes")
    build = ["build-corpus", str(parsed / "pubmed25n0001.parquet"), "--out", str(corpus), "--stats", str(stats)]
    assert main(build) == 1
    assert "--overwrite" in one_error_line(capsys, "build-corpus", stats)
    assert stats.read_text() == "my notes" and not corpus.exists()
    assert main(["parse-pubmed", str(xml), "--out-dir", str(parsed)]) == 1  # its own earlier output too
    one_error_line(capsys, "parse-pubmed", parsed / "pubmed25n0001.parquet")
    assert main([*build, "--overwrite"]) == 0 and read_json(stats)["records"] == 5
    assert main(["parse-pubmed", str(xml), "--out-dir", str(parsed), "--overwrite"]) == 0
    twin = tmp_path / "other" / xml.name  # the same file name: the same output file
    twin.parent.mkdir()
    demo.write_pubmed_file(twin, first_pmid=100, count=7, seed=1)
    assert main(["parse-pubmed", str(xml), str(twin), "--out-dir", str(tmp_path / "both")]) == 1
    assert "two inputs" in one_error_line(capsys, "parse-pubmed", tmp_path / "both" / "pubmed25n0001.parquet")
    assert not (tmp_path / "both").exists()


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("compact-biomed")
    result = subprocess.run([str(script), "--help"], check=False, capture_output=True, text=True)
    assert result.returncode == 0
    assert "parse-pubmed" in result.stdout and "fetch-huggingface-pubmed" in result.stdout


# --- outputs: nothing a command did not write is ever deleted -----------------------------------------------------


def ner_config(tmp_path) -> Path:
    """The demo config with one quick epoch of NER."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["ner"]["hparams"].update(epochs=1, max_length=32)
    path = tmp_path / "quick.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ner_data(folder: Path) -> Path:
    folder.mkdir()
    train = "Aspirin\tB\nreduces\tO\nfever\tO\n\nCisplatin\tB\nhurts\tO\n\n"
    dev, test = "Metformin\tB\nlowers\tO\n\n", "Aspirin\tB\nhelps\tO\n\n"
    for name, text in {"train": train, "devel": dev, "train_dev": train + dev, "test": test}.items():
        (folder / f"{name}.tsv").write_text(text)
    return folder


def finetune_args(tiny_bert_dir, tmp_path, out_dir) -> list[str]:
    return [
        "finetune-ner",
        "--config",
        str(ner_config(tmp_path)),
        "--model-dir",
        str(tiny_bert_dir),
        "--data-dir",
        str(ner_data(tmp_path / "data")),
        "--out-dir",
        str(out_dir),
    ]


def tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in folder.rglob("*")}


def one_error_line(capsys, step: str, path) -> str:
    error = capsys.readouterr().err
    assert error.startswith(f"compact-biomed {step}: error: ") and error.count("\n") == 1, error
    assert str(Path(path).absolute()) in error or str(path) in error
    return error


def test_finetune_ner_refuses_a_folder_it_did_not_write_and_keeps_its_files(tmp_path, tiny_bert_dir, capsys):
    out = tmp_path / "existing"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("mine")
    (out / "sub" / "data.csv").write_text("a,b\n")
    before = tree(out)
    assert main(finetune_args(tiny_bert_dir, tmp_path, out)) == 1
    assert "did not write" in one_error_line(capsys, "finetune-ner", out)
    assert tree(out) == before


def test_out_dir_dot_refuses_and_leaves_the_current_folder_alone(tmp_path, tiny_bert_dir, capsys, monkeypatch):
    cwd = tmp_path / "cwd"
    (cwd / ".git").mkdir(parents=True)
    (cwd / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (cwd / "README.md").write_text("keep me")
    before = tree(cwd)
    args = finetune_args(tiny_bert_dir, tmp_path, ".")
    monkeypatch.chdir(cwd)
    assert main(args) == 1
    one_error_line(capsys, "finetune-ner", cwd)
    assert tree(cwd) == before


def test_a_second_run_replaces_its_own_previous_output_only_with_overwrite(tmp_path, tiny_bert_dir, capsys):
    """By hand, an earlier output of the same step may be another model's or seed's (the pipeline's results/ hold
    one per model and seed, and the tables read them): replaced only when asked."""
    out = tmp_path / "run"
    args = finetune_args(tiny_bert_dir, tmp_path, out)
    assert main(args) == 0
    first = read_json(out / "metrics.json")
    assert first["seed"] == 1  # no --seed: the first of the config's ner.seeds
    before = tree(out)
    assert main([*args, "--seed", "3"]) == 1
    assert "holds an earlier 'finetune-ner' output; give a new folder, or --overwrite" in one_error_line(
        capsys, "finetune-ner", out
    )
    assert tree(out) == before
    (out / "metrics.json").write_text("{}")  # a stale file of the previous output is replaced, not kept
    assert main([*args, "--overwrite"]) == 0
    assert read_json(out / "metrics.json")["test"] == first["test"]
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "metrics.json", "predictions.tsv"]


@pytest.mark.parametrize("step", ["tokenize-shard", "base-model", "pretrain"])
def test_other_folder_outputs_refuse_a_folder_they_did_not_write(tmp_path, tiny_bert_dir, capsys, step):
    out = tmp_path / "existing"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"text": ["Aspirin reduces fever."] * 4}), corpus)
    args = {
        "tokenize-shard": [
            "--corpus",
            str(corpus),
            "--tokenizer",
            str(tiny_bert_dir),
            "--shard",
            "0",
            "--num-shards",
            "1",
        ],
        "base-model": ["teacher", "--corpus", str(corpus)],
        "pretrain": [
            "DistilBioBERT",
            "--shards",
            str(tiny_bert_dir),
            "--teacher",
            str(tiny_bert_dir),
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
        ],
    }[step]
    assert main([step, *args, "--out", str(out)]) == 1
    one_error_line(capsys, step, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_base_model_reruns_into_its_own_previous_output(tmp_path):
    """The marker names the step as the CLI checks it: a second run replaces the first run's folder."""
    corpus, out = tmp_path / "corpus.parquet", tmp_path / "teacher"
    pq.write_table(pa.table({"text": ["Aspirin reduces fever.", "Cisplatin hurts the kidney."] * 20}), corpus)
    args = ["base-model", "teacher", "--corpus", str(corpus), "--out", str(out)]
    assert main(args) == 0
    first = sorted(p.name for p in out.iterdir())
    assert main(args) == 1  # not without --overwrite
    assert main([*args, "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == first and "config.json" in first


def test_base_model_from_the_hub_that_cannot_be_fetched_is_one_line_naming_it(tmp_path, capsys):
    """A teacher on the hub with no network (tests run offline) and nothing cached: one line naming the hub id and
    revision."""
    config = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    config["teacher"] = {"name": "T", "hub_id": "compact-biomed-tests/no-such-model", "revision": "v1"}
    (tmp_path / "hub.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    out = tmp_path / "teacher"
    assert main(["base-model", "teacher", "--config", str(tmp_path / "hub.yaml"), "--out", str(out)]) == 1
    one_error_line(capsys, "base-model", "compact-biomed-tests/no-such-model @ v1")
    assert not out.exists()


def test_a_hub_row_whose_host_refuses_the_connection_is_one_line_naming_it(tmp_path):
    """Online, with the hub out of reach (here: a closed local port), the HTTP client's ConnectError is no OSError:
    it was a 40-line traceback, and Snakemake showed only the job's exit status."""
    out = tmp_path / "out"
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path)}
    command = [sys.executable, "-m", "compact_biomed.cli", "fetch-pretrained", "--config", "config/released.yaml"]
    command += ["--out", str(out), "DistilBioBERT"]
    result = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("compact-biomed fetch-pretrained: error: models.DistilBioBERT.pretrained: nlpie/distil")
    assert "ConnectError" in last and not out.exists()


def test_tokenize_shard_reruns_into_its_own_previous_output(tmp_path, tiny_bert_dir):
    corpus, out = tmp_path / "corpus.parquet", tmp_path / "shard"
    pq.write_table(pa.table({"text": ["Aspirin reduces fever.", "Cisplatin hurts."]}), corpus)
    args = [
        "tokenize-shard",
        "--corpus",
        str(corpus),
        "--tokenizer",
        str(tiny_bert_dir),
        "--out",
        str(out),
        "--shard",
        "0",
        "--num-shards",
        "1",
    ]
    assert main(args) == 0
    first = tree(out)
    assert main(args) == 1 and tree(out) == first  # not without --overwrite
    assert main([*args, "--overwrite"]) == 0 and tree(out) == first


# --- bad command lines and configs: one line naming the file ------------------------------------------------------


def test_a_shard_outside_the_range_is_one_line(tmp_path, tiny_bert_dir, capsys):
    corpus = tmp_path / "corpus.parquet"
    pq.write_table(pa.table({"text": ["Aspirin reduces fever."]}), corpus)
    args = ["tokenize-shard", "--corpus", str(corpus), "--tokenizer", str(tiny_bert_dir), "--out", str(tmp_path / "s")]
    assert main([*args, "--shard", "2", "--num-shards", "2"]) == 1
    assert (
        capsys.readouterr().err == "compact-biomed tokenize-shard: error: --shard 2 is outside 0..1 (--num-shards 2)\n"
    )
    assert not (tmp_path / "s").exists()


def test_missing_model_dir_is_one_line_naming_it(tmp_path, capsys):
    missing = tmp_path / "no-such-model"
    args = [
        "finetune-ner",
        "--model-dir",
        str(missing),
        "--data-dir",
        str(ner_data(tmp_path / "data")),
        "--out-dir",
        str(tmp_path / "out"),
    ]
    assert main(args) == 1
    assert "no such file or folder" in one_error_line(capsys, "finetune-ner", missing)
    assert not (tmp_path / "out").exists()


def test_a_lowercasing_tokenizer_of_a_cased_vocabulary_is_refused_by_hand_too(tmp_path, tiny_bert_dir, capsys):
    bare = tmp_path / "bare"  # the weights and a cased vocab.txt alone: AutoTokenizer lower-cases
    bare.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        shutil.copy(tiny_bert_dir / name, bare / name)
    out = tmp_path / "out"
    assert main(finetune_args(bare, tmp_path, out)) == 1
    assert "lower-cases text" in one_error_line(capsys, "finetune-ner", bare)
    assert not out.exists()


def test_a_missing_parsed_file_is_named_as_missing(tmp_path, capsys):
    missing = tmp_path / "parsed" / "*.parquet"  # a shell glob that matched nothing
    args = ["build-corpus", str(missing), "--out", str(tmp_path / "c.parquet"), "--stats", str(tmp_path / "s.json")]
    assert main(args) == 1
    assert one_error_line(capsys, "build-corpus", missing).endswith(": no such file or folder\n")
    assert not (tmp_path / "c.parquet").exists() and not (tmp_path / "s.json").exists()


def test_a_model_without_model_type_is_one_line_saying_what_to_add(tmp_path, tiny_bert_dir, capsys):
    old = tmp_path / "old"  # older models (TinyBERT's) name only their architecture
    shutil.copytree(tiny_bert_dir, old)
    config = json.loads((old / "config.json").read_text())
    del config["model_type"]
    (old / "config.json").write_text(json.dumps({**config, "architectures": ["BertForMaskedLM"]}))
    assert main(finetune_args(old, tmp_path, tmp_path / "out")) == 1
    assert 'add "model_type": "bert"' in one_error_line(capsys, "finetune-ner", old / "config.json")
    assert not (tmp_path / "out").exists()


def test_yaml_syntax_error_is_one_line_naming_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("threads: 2\nmodels:\n  a: [1, 2\nner: {}\n")
    assert main(["check-config", "--config", str(bad)]) == 1
    error = one_error_line(capsys, "check-config", bad)
    assert re.search(r"line \d+, column \d+", error) and "not valid YAML" in error
    assert main(["check-config", "--config", str(tmp_path / "missing.yaml")]) == 1
    one_error_line(capsys, "check-config", tmp_path / "missing.yaml")


def test_without_config_a_step_uses_the_demo_config_from_any_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a user's data folder, not the clone
    assert main(["check-config"]) == 0
    demo = REPO / "config" / "config.yaml"
    assert capsys.readouterr().out.splitlines() == [
        f"no --config: the demo's settings ({demo}); config/paper.yaml has the paper's",  # tiny models' settings
        f"{demo}: valid",
    ]


# --- one config, checked and completed the same way by the CLI and the workflow ----------------------------------


def test_version(capsys):
    from compact_biomed import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"compact-biomed {__version__}\n"


def test_check_config_takes_layered_configs_as_snakemake_merges_them(capsys, monkeypatch):
    """README: config/released.yaml with config/compare.yaml on top; the second alone has no ner section."""
    monkeypatch.chdir(REPO)
    layers = ["--config", "config/released.yaml", "--config", "config/compare.yaml"]
    assert main(["check-config", *layers]) == 0
    assert capsys.readouterr().out.strip() == "config/released.yaml + config/compare.yaml: valid"
    merged = load_config(["config/released.yaml", "config/compare.yaml"])
    released, compare = (yaml.safe_load((REPO / f"config/{name}.yaml").read_text()) for name in ("released", "compare"))
    assert list(merged["models"]) == [*released["models"], *compare["models"]]
    assert main(["check-config", "--config", "config/compare.yaml"]) == 1
    assert "'ner' is a required property" in capsys.readouterr().err


def test_the_cli_and_the_workflow_see_the_same_filled_config(tmp_path):
    """A config without ner.hparams (and other optional keys) gets the schema's defaults in both."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    del config["ner"]["hparams"], config["model_stats"], config["pubmed"]["base_url"]
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump(config))
    workdir = copy_workflow(tmp_path / "run")
    with open(workdir / "Snakefile", "a") as snakefile:  # the config the rules read, after common.smk
        snakefile.write('\nimport json\n(Path(workflow.basedir) / "seen.json").write_text(json.dumps(config))\n')
    result = run_snakemake("-n", "--configfile", str(own), cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads((workdir / "seen.json").read_text())
    assert seen == load_config([str(own)])
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text())["properties"]
    hparams = schema["ner"]["properties"]["hparams"]["properties"]
    assert seen["ner"]["hparams"] == {key: value["default"] for key, value in hparams.items() if "default" in value}
    assert seen["pubmed"]["base_url"] == schema["pubmed"]["properties"]["base_url"]["default"]


# --- found by a new user: each printed a traceback instead of one line --------------------------------------------


def test_a_random_base_model_without_corpus_is_one_line_asking_for_it(tmp_path, capsys):
    out = tmp_path / "teacher"
    assert main(["base-model", "teacher", "--out", str(out)]) == 1
    assert "--corpus" in one_error_line(capsys, "base-model", "teacher")
    assert not out.exists()


@pytest.mark.parametrize("model", ["NoSuch", "DistilBioBERT"])
def test_base_model_of_a_name_without_one_is_one_line_naming_the_valid_names(tmp_path, capsys, model):
    out = tmp_path / "base"
    assert main(["base-model", model, "--out", str(out)]) == 1
    error = one_error_line(capsys, "base-model", model)
    assert "teacher, BioDistilBERT, BioTinyBERT, BioMobileBERT" in error  # the demo's continual models
    assert not out.exists()


@pytest.mark.parametrize(
    "content, problem", [("{bad", "not valid JSON"), ('{"a": 1}', "not a metrics.json written by finetune-ner")]
)
def test_ner_f1_table_of_a_bad_metrics_file_is_one_line_naming_it(tmp_path, capsys, content, problem):
    metrics = tmp_path / "results/ner/BioBERT/demo-disease/seed1/metrics.json"  # a run of the demo's table
    metrics.parent.mkdir(parents=True)
    metrics.write_text(content)
    md, csv = tmp_path / "t.md", tmp_path / "t.csv"
    assert main(["ner-f1-table", str(metrics), "--markdown", str(md), "--csv", str(csv)]) == 1
    error = one_error_line(capsys, "ner-f1-table", metrics)
    assert problem in error and "not in the table" not in error, error
    assert not md.exists() and not csv.exists()


def test_finetune_ner_of_a_folder_without_a_model_is_one_line_naming_it(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    args = finetune_args(empty, tmp_path, tmp_path / "out")
    assert main(args) == 1
    assert "not a Hugging Face model folder" in one_error_line(capsys, "finetune-ner", empty)
    assert not (tmp_path / "out").exists()
