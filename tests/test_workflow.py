"""The Snakemake workflow itself: lint, the paper DAG offline, config errors, and the demo end to end."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile

import pandas as pd
import pytest
import yaml
from conftest import REPO, copy_workflow, huggingface_pubmed_dataset
from conftest import run_snakemake as snakemake

from compact_biomed.io import OUTPUT_MARKER


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    table = output.split("Job stats:")[1].split("Reasons:")[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


@pytest.mark.parametrize("configfile", [[], ["--configfile", "config/paper.yaml"]], ids=["demo", "paper"])
def test_lint_is_clean(configfile):
    result = snakemake("--lint", *configfile)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_make_clean_leaves_the_users_datasets_and_checkpoints(tmp_path):
    # `make clean` was `rm -rf results logs resources .snakemake`: the NER sets users put under resources/ and
    # the pre-training checkpoints (GPU-days at the paper's scale) went with it
    mine = [tmp_path / "resources/biobert/NER/MySet/train.tsv", tmp_path / "results/checkpoints/X/run-1/state.pt"]
    for path in mine:
        path.parent.mkdir(parents=True)
        path.write_text("mine")
    result = subprocess.run(["make", "-f", REPO / "Makefile", "clean"], cwd=tmp_path, capture_output=True, check=False)
    assert "No rule to make target 'clean'" in result.stderr.decode()
    assert all(path.read_text() == "mine" for path in mine)


def test_conda_environment_installs_this_checkout(tmp_path):
    # `--sdm conda`: Snakemake copies environment.yml to .snakemake/conda/<hash>.yaml; conda writes its pip list to
    # a requirements file there and runs pip in that folder, with the workflow's environment variables.
    environment = yaml.safe_load((REPO / "environment.yml").read_text())
    pip = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict))
    copied = tmp_path / ".snakemake" / "conda"
    copied.mkdir(parents=True)
    (copied / "condaenv.requirements.txt").write_text("\n".join(line for line in pip if line.startswith("-e")))
    env = {**os.environ, "COMPACT_BIOMED_ROOT": str(REPO)}  # what rules/common.smk sets
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            "-r",
            "condaenv.requirements.txt",
        ],
        cwd=copied,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Would install compact-biomed-" in result.stdout


def test_jobs_run_their_own_clones_package_not_the_installed_one(tmp_path):
    """A conda environment shared through --conda-prefix holds the package of the clone that created it (here: the
    test's installed package); the jobs of another clone must still run that clone's own src/."""
    workdir = copy_workflow(tmp_path / "clone")
    shutil.copytree(REPO / "src", workdir / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    demo = workdir / "src" / "compact_biomed" / "demo.py"
    marker = tmp_path / "imported-from"
    demo.write_text(
        demo.read_text()
        + "\n\n_write = write_ner_dataset\n\n\ndef write_ner_dataset(*args, **kwargs):\n"
        + f"    Path({str(marker)!r}).write_text(__file__)\n    return _write(*args, **kwargs)\n"
    )
    result = snakemake("--cores", "1", "resources/demo/ner/demo-disease/train.tsv", cwd=workdir)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert marker.read_text() == str(demo)


def test_paper_dag_has_every_stage_for_7_models_5_datasets_5_seeds():
    result = snakemake("-n", "--configfile", "config/paper.yaml", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    paper = yaml.safe_load((REPO / "config/paper.yaml").read_text())
    assert counts["finetune_ner"] == 7 * 5 * 5
    assert counts["pretrain"] == 6
    assert counts["teacher"] == 1 and counts["start_model"] == 3 and counts["fetch_ner"] == 1
    assert counts["fetch_pubmed"] == counts["parse_pubmed"] == paper["pubmed"]["files"]["last"]
    assert counts["tokenize_shard"] == 4 * paper["tokenize"]["num_shards"]  # teacher + 3 own tokenizers
    assert counts["ner_f1_table"] == 1 and counts["build_corpus"] == 1
    assert "demo_pubmed" not in counts


def job_field(output: str, field: str) -> dict[str, list[str | None]]:
    """Per rule of a dry run, the value of each of its jobs' `field:` line (None where the job has none)."""
    found = {}
    for block in output.split("rule ")[1:]:
        rule = block.split(":", 1)[0]
        match = re.search(rf"^\s*{field}: (.*)$", block, re.MULTILINE)
        found.setdefault(rule, []).append(match[1] if match else None)
    return found


def job_resources(output: str) -> dict[str, list[str]]:
    """Per rule of a dry run, the 'resources:' line of each of its jobs."""
    return {rule: [line or "" for line in lines] for rule, lines in job_field(output, "resources").items()}


def job_threads(output: str) -> dict[str, list[int]]:
    """Per rule of a dry run, the threads of each of its jobs (Snakemake prints the line only above 1)."""
    return {rule: [int(line or 1) for line in lines] for rule, lines in job_field(output, "threads").items()}


def with_a_gpu(tmp_path) -> dict:
    """The environment of a machine with a GPU, as the workflow sees one: nvidia-smi on the PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nvidia-smi").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "nvidia-smi").chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}


def test_on_a_gpu_workstation_ner_jobs_share_the_gpu_and_training_takes_it_alone(tmp_path):
    """With a GPU (nvidia-smi on the PATH), a fine-tuning takes one of the profile's 8 gpu_slots and no whole GPU;
    pre-training and model_stats take the GPU and every slot, also when the user sets another number of slots; with
    several GPUs, one GPU's share of the slots."""
    env = with_a_gpu(tmp_path)
    for extra, slots in (([], 8), (["--resources", "gpu_slots=2"], 2), (["--resources", "gpu=2", "gpu_slots=16"], 8)):
        result = snakemake("-n", "--cores", "8", *extra, extra_env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        resources = job_resources(result.stdout)
        assert resources["finetune_ner"] and all(
            "gpu_slots=1" in r and not re.search(r"\bgpu=", r) for r in resources["finetune_ner"]
        )
        for rule in ("pretrain", "model_stats"):
            assert resources[rule] and all(
                re.search(r"\bgpu=1\b", r) and re.search(rf"\bgpu_slots={slots}\b", r) for r in resources[rule]
            ), rule


def test_on_a_gpu_workstation_the_profiles_gpu_slots_of_ner_jobs_run_at_once_on_few_cores(tmp_path):
    """A fine-tuning on the GPU takes one CPU thread, whatever `threads` says (paper.yaml: 4, for CPU-only
    machines): at 4 threads each, `--cores 8` would run 2 of the GPU's 8 slots at once. On a machine without a GPU
    the jobs keep `threads`."""
    for env, threads in ((with_a_gpu(tmp_path), 1), (None, 4)):
        result = snakemake("-n", "--configfile", "config/paper.yaml", "--cores", "8", extra_env=env, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        assert set(job_threads(result.stdout)["finetune_ner"]) == {threads}


def test_model_stats_measure_alone_on_a_workstation_without_a_gpu(tmp_path):
    """Speeds measured beside fine-tunings are not the models' own: without a GPU model_stats takes every core the
    run has (so nothing runs beside it); with one it takes the GPU alone and the config's threads (the demo's 1)."""
    for env, threads in ((None, 8), (with_a_gpu(tmp_path), 1)):
        result = snakemake("-n", "--cores", "8", extra_env=env)
        assert result.returncode == 0, result.stderr[-3000:]
        assert job_threads(result.stdout)["model_stats"] == [threads]


def test_on_a_workstation_with_several_gpus_each_job_sees_the_gpu_it_claimed(tmp_path):
    """Snakemake gives a local job no device of its own: each claims one (compact_biomed.gpus) among the GPUs the
    user listed, and its log's first line shows it."""
    env = {**with_a_gpu(tmp_path), "CUDA_VISIBLE_DEVICES": "3,5", "TMPDIR": str(tmp_path)}  # TMPDIR: its own locks
    workdir = copy_workflow(tmp_path / "workdir")
    targets = [f"results/ner/BioBERT/demo-disease/seed{seed}/metrics.json" for seed in (1, 2)]
    result = snakemake(*targets, "--cores", "2", "--resources", "gpu=2", "gpu_slots=4", cwd=workdir, extra_env=env)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    for seed in (1, 2):
        first = (workdir / f"logs/finetune_ner/BioBERT/demo-disease/seed{seed}.log").read_text().splitlines()[0]
        assert re.search(r"CUDA_VISIBLE_DEVICES=[35]$", first), first  # one of the two, not "3,5"
    again = ["resources/demo/ner/demo-disease/train.tsv", "--force", "--cores", "1"]
    result = snakemake(*again, "--resources", "gpu=2", "gpu_slots=1", cwd=workdir, extra_env=env)
    assert result.returncode != 0 and "give every GPU as many slots" in result.stdout + result.stderr


def test_on_a_gpu_workstation_resources_without_gpu_slots_are_refused_in_one_line(tmp_path):
    """`--resources` on the command line replaces the profile's list: `--resources gpu=1` alone would leave the NER
    jobs on the GPU uncapped (any number at once, beside a pre-training). One line says what to pass instead, before
    any job runs."""
    env = with_a_gpu(tmp_path)
    workdir = copy_workflow(tmp_path / "workdir")
    target = "resources/demo/ner/demo-disease/train.tsv"
    for resources in (["--resources", "gpu=1"], ["--workflow-profile", "none"]):
        result = snakemake(target, "--cores", "1", *resources, cwd=workdir, extra_env=env)
        output = result.stdout + result.stderr  # Snakemake 9 logs a WorkflowError on stdout
        error = [line for line in output.splitlines() if "gpu_slots" in line]
        assert result.returncode != 0 and len(error) == 1, output[-3000:]
        assert "--resources gpu=1 gpu_slots=8" in error[0] and not (workdir / "resources").exists()
    result = snakemake(target, "--cores", "1", "--resources", "gpu=1", cwd=workdir)  # no GPU: nothing to cap
    assert result.returncode == 0 and (workdir / target).exists(), result.stderr[-3000:]
    result = snakemake(
        target, "--forcerun", "--cores", "1", "--resources", "gpu=1", "gpu_slots=4", cwd=workdir, extra_env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_a_users_file_in_an_output_folder_stops_the_run_before_snakemake_deletes_it(tmp_path):
    """Snakemake deletes a folder output before its job reruns, and a fine-tuning's folder would be refused only
    after training: a file the pipeline did not write in one of its output folders (the folder's marker lists
    its own) is one line before any job starts, and stays."""
    workdir = copy_workflow(tmp_path / "workdir")
    model = workdir / "results/models/DistilBioBERT"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / OUTPUT_MARKER).write_text("pretrain\nconfig.json\n")
    result = snakemake("-n", "--cores", "1", cwd=workdir)
    assert result.returncode == 0, result.stdout[-3000:]  # its own files only: fine
    (model / "notes.txt").write_text("mine")
    for args in (["-n"], []):
        result = snakemake(*args, "--cores", "1", cwd=workdir)
        output = result.stdout + result.stderr
        error = [line for line in output.splitlines() if "notes.txt" in line]
        assert result.returncode != 0 and len(error) == 1, output[-3000:]
        assert str(model / "notes.txt") in error[0] and (model / "notes.txt").read_text() == "mine"
    assert not (workdir / "results/teacher").exists()  # no job ran


def test_a_nested_config_number_is_told_to_go_in_a_config_file():
    """Snakemake reads a nested --config value as text: the number the user wrote fails the schema, and the
    advice must be one that works (a second --configfile), not "write it as a number"."""
    result = snakemake("-n", "--config", "ner={hparams: {epochs: 2}}")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "'ner.hparams.epochs': '2' is not of type 'integer'" in output, output[-3000:]
    assert "a nested snakemake --config value is always text: give it in a second --configfile" in output


def test_a_users_folder_at_a_folder_outputs_path_stops_the_run(tmp_path):
    """A folder the pipeline did not write (no marker) where one of its folder outputs goes, a model or a shard,
    would be read as that output, and deleted when it reruns: one line before any job starts, and it stays."""
    workdir = copy_workflow(tmp_path / "workdir")
    for folder in ("results/models/TinyBioBERT", "results/shards/teacher/shard-0-of-2"):
        mine = workdir / folder
        mine.mkdir(parents=True)
        (mine / "my_weights.bin").write_text("precious")
        for args in (["-n"], ["--forcerun", "pretrain"]):
            result = snakemake(*args, "--cores", "1", cwd=workdir)
            output = result.stdout + result.stderr
            error = [line for line in output.splitlines() if "a folder the pipeline did not write" in line]
            assert result.returncode != 0 and len(error) == 1 and error[0].startswith(str(mine)), output[-3000:]
            assert (mine / "my_weights.bin").read_text() == "precious"
        shutil.rmtree(mine)
    assert not (workdir / "results/teacher").exists()  # no job ran
    mine = workdir / "results/models/MyOwnModel"  # no row of this config: not an output of this run
    mine.mkdir(parents=True)
    (mine / "my_weights.bin").write_text("precious")
    result = snakemake("-n", cwd=workdir)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]


def test_slurm_profile_groups_ner_jobs_eight_to_one_gpu_job():
    pytest.importorskip("snakemake_executor_plugin_slurm")
    result = snakemake("-n", "--configfile", "config/paper.yaml", "--workflow-profile", "profiles/slurm", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    groups = result.stdout.split("Group job ner_gpu (jobs in lexicogr. order):")[1:]
    finetunes = [group.split("\n[")[0].count("rule finetune_ner:") for group in groups]
    assert sum(finetunes) == 7 * 5 * 5 and len(groups) == 22  # 175 jobs, 8 to a group job
    assert sorted(set(finetunes)) == [7, 8]
    # A string gres is not added up over a group's jobs (an integer gpu would request 8 GPUs).
    assert all("gres=gpu:1" in r and not re.search(r"\bgpu=", r) for r in job_resources(result.stdout)["finetune_ner"])


def test_corpus_from_a_huggingface_dataset(tmp_path):
    # The paper's source: a dataset in the layout of the HF `pubmed` dataset (here a local folder).
    citations = [(pmid, f"[Title {pmid}.]", "Text.") for pmid in (3, 1, 2)]
    dataset = huggingface_pubmed_dataset(tmp_path / "pubmed", citations)
    workdir = copy_workflow(tmp_path / "run")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["pubmed"] = {"source": "huggingface", "huggingface": {"path": str(dataset)}}
    (workdir / "hf.yaml").write_text(yaml.safe_dump(config))

    result = snakemake("results/pubmed/corpus.parquet", "--cores", "1", "--configfile", "hf.yaml", cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    corpus = pd.read_parquet(workdir / "results/pubmed/corpus.parquet")
    assert corpus["text"].tolist() == ["Title 3. Text.", "Title 1. Text.", "Title 2. Text."]
    assert not (workdir / "results/pubmed/raw").exists()  # no baseline file was fetched


def test_config_overrides_apply_to_the_demo_config():
    # `--config` alone keeps the demo config and overrides one key (it used to replace the whole config).
    result = snakemake("-n", "--cores", "4", "--config", "threads=2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "threads: 2" in result.stdout


def test_a_configfile_replaces_the_demo_config_and_config_overrides_it(tmp_path):
    own = yaml.safe_load((REPO / "config/config.yaml").read_text())
    own["models"] = {"MyTiny": own["models"]["TinyBioBERT"]}
    own["ner"]["seeds"] = [1]
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(own))
    result = snakemake("-n", "--cores", "4", "--configfile", str(tmp_path / "own.yaml"), "--config", "threads=3")
    assert result.returncode == 0, result.stderr[-3000:]
    counts = job_counts(result.stdout)
    assert counts["pretrain"] == 1  # the demo's six models were not merged in
    assert counts["finetune_ner"] == 2  # teacher and MyTiny x one dataset x one seed
    assert "threads: 3" in result.stdout


def test_a_fixed_local_pubmed_file_is_read_again_even_if_older(tmp_path):
    from compact_biomed import demo

    local = tmp_path / "local"
    good = local / "pubmed26n0001.xml.gz"
    demo.write_pubmed_file(good, first_pmid=1, count=5, seed=0)
    fixed = good.read_bytes(), good.with_name(good.name + ".md5").read_bytes()
    # A cut file whose sidecar matches it: the md5 check passes, parsing fails.
    good.write_bytes(fixed[0][: len(fixed[0]) // 2])
    good.with_name(good.name + ".md5").write_text(f"MD5({good.name})= {hashlib.md5(good.read_bytes()).hexdigest()}")
    workdir = copy_workflow(tmp_path / "run")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["pubmed"].update(local_dir=str(local), files=[good.name.removesuffix(".xml.gz")])
    (workdir / "local.yaml").write_text(yaml.safe_dump(config))
    target = ["results/pubmed/parsed/pubmed26n0001.parquet", "--cores", "1", "--configfile", "local.yaml"]

    result = snakemake(*target, cwd=workdir)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"[parse_pubmed] error: {good}: " in output  # the user's file, not a copy
    assert output.count("Error in rule parse_pubmed") == 1  # not retried: it would fail the same way

    good.write_bytes(fixed[0])
    good.with_name(good.name + ".md5").write_bytes(fixed[1])
    for path in (good, good.with_name(good.name + ".md5")):
        os.utime(path, (1e9, 1e9))  # a fixed copy that kept its old timestamp (cp -p, an archive)
    result = snakemake(*target, cwd=workdir)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert len(pd.read_parquet(workdir / "results/pubmed/parsed/pubmed26n0001.parquet")) == 5


def test_a_baseline_file_missing_from_local_dir_stops_the_run_instead_of_an_old_corpus_being_used(tmp_path):
    """With a corpus from an earlier run (the demo's), Snakemake planned pre-training on it: parse_pubmed could not
    run, and the corpus counted as an input that exists."""
    local = tmp_path / "baseline"
    local.mkdir()  # pubmed25n1274 is not there (downloaded as pubmed26n*, or not yet copied)
    workdir = copy_workflow(tmp_path / "run")
    demo = snakemake("results/pubmed/corpus.parquet", "--cores", "1", cwd=workdir)  # the earlier run: the demo's
    assert demo.returncode == 0, (demo.stdout + demo.stderr)[-3000:]
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["pubmed"].update(local_dir=str(local), files=["pubmed25n1274"])
    (workdir / "local.yaml").write_text(yaml.safe_dump(config))

    result = snakemake("-n", "--configfile", "local.yaml", cwd=workdir)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"pubmed.local_dir': {local}/pubmed25n1274.xml.gz is missing (and 1 more of the 2)" in output
    assert "tokenize_shard" not in output


def test_invalid_config_value_stops_with_the_key(tmp_path):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["ner"]["hparams"]["epochs"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(bad))
    assert result.returncode != 0
    assert "invalid config value at 'ner.hparams.epochs'" in result.stdout + result.stderr


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda c: c["ner"].update(datasets=["demo-desease"]),
            "invalid config value at 'ner.datasets': 'demo-desease' is not a demo dataset",
        ),
        (
            lambda c: c["models"]["TinyBioBERT"]["student"].update(hidden_sise=64),
            "invalid config value at 'models.TinyBioBERT.student': 'hidden_sise' is not a bert config key",
        ),
    ],
    ids=["dataset", "architecture"],
)
def test_a_misspelt_name_stops_before_any_job(tmp_path, mutate, message):
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    mutate(config)
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(tmp_path / "typo.yaml"))
    assert result.returncode != 0
    assert message in result.stdout


def test_fetch_ner_extracts_the_configured_sets_into_data_dir(tmp_path):
    archive = tmp_path / "datasets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "devel", "test", "train_dev"):
            (tmp_path / f"{split}.tsv").write_text(f"{split}\tO\n\n")
            tar.add(tmp_path / f"{split}.tsv", arcname=f"datasets/NER/BC5CDR-chem/{split}.tsv")
    workdir = copy_workflow(tmp_path / "run")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["ner"].update(archive_url=str(archive), data_dir="resources/biobert/NER", datasets=["BC5CDR-chem"])
    (workdir / "archive.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(
        "resources/biobert/NER/BC5CDR-chem/train_dev.tsv", "--cores", "1", "--configfile", "archive.yaml", cwd=workdir
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert (workdir / "resources/biobert/NER/BC5CDR-chem/devel.tsv").read_text() == "devel\tO\n\n"


def test_a_dataset_of_ones_own_is_fine_tuned_beside_the_archive_sets(tmp_path):
    archive = tmp_path / "datasets.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "devel", "test", "train_dev"):
            (tmp_path / f"{split}.tsv").write_text("Aspirin\tB\n\n")
            tar.add(tmp_path / f"{split}.tsv", arcname=f"datasets/NER/BC5CDR-chem/{split}.tsv")
    workdir = copy_workflow(tmp_path / "run")
    mine = workdir / "resources/biobert/NER/mine"
    mine.mkdir(parents=True)
    for split in ("train", "test", "devel"):
        (mine / f"{split}.tsv").write_text("Metformin\tB\n\n")
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["ner"].update(archive_url=str(archive), data_dir="resources/biobert/NER", datasets=["BC5CDR-chem", "mine"])
    (workdir / "archive.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", "archive.yaml", cwd=workdir)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert job_counts(result.stdout)["finetune_ner"] == 7 * 5 * 2 and job_counts(result.stdout)["fetch_ner"] == 1
    result = snakemake(
        "resources/biobert/NER/BC5CDR-chem/test.tsv", "--cores", "1", "--configfile", "archive.yaml", cwd=workdir
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert sorted(p.name for p in mine.iterdir()) == ["devel.tsv", "test.tsv", "train.tsv"]
    assert (mine / "train.tsv").read_text() == "Metformin\tB\n\n"


def test_a_local_dataset_without_devel_tsv_is_fine_tuned(tmp_path):
    # The loader reads train_dev.tsv (else devel.tsv); the workflow asks for no more than that.
    data = tmp_path / "ner" / "mine"
    data.mkdir(parents=True)
    for split in ("train", "test", "train_dev"):  # train_dev.tsv: train.tsv, then the dev sentences
        (data / f"{split}.tsv").write_text("Aspirin\tB\n\n" + ("Metformin\tB\n\n" if split == "train_dev" else ""))
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["ner"].update(data_dir=str(tmp_path / "ner"), datasets=["mine"])
    (tmp_path / "local.yaml").write_text(yaml.safe_dump(config))
    result = snakemake("-n", "--configfile", str(tmp_path / "local.yaml"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert job_counts(result.stdout)["finetune_ner"] == 7 * 5
    assert "devel.tsv" not in result.stdout
    (data / "test.tsv").write_text("Aspirin\tX\n\n")  # a bad line stops the run before any job
    result = snakemake("-n", "--configfile", str(tmp_path / "local.yaml"))
    assert result.returncode != 0 and "'mine' has bad data" in result.stdout + result.stderr


@pytest.mark.slow
def test_speed_settings_leave_a_finished_pretraining_alone_and_a_learning_setting_reruns_it(demo_workdir, tmp_path):
    """`compile`, `packing`, the micro-batch and the data-loading workers train the same model faster: turning them
    on must not redo finished pre-trainings and every fine-tuning after them. A setting that changes what is
    learned does."""
    config = yaml.safe_load((demo_workdir / "config/config.yaml").read_text())
    config["train_defaults"].update(compile=True, packing=True, per_device_batch_size=4, dataloader_workers=1)
    (tmp_path / "faster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))  # params compare in order
    result = snakemake("--cores", "2", "-n", "--configfile", str(tmp_path / "faster.yaml"), cwd=demo_workdir)
    assert "Nothing to be done" in result.stdout + result.stderr, result.stdout[-3000:]
    config["train_defaults"]["max_grad_norm"] = 0.5  # no model of the demo sets its own
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake("--cores", "2", "-n", "--configfile", str(tmp_path / "other.yaml"), cwd=demo_workdir)
    assert result.returncode == 0 and job_counts(result.stdout)["pretrain"] == len(config["models"])


@pytest.mark.slow
def test_demo_runs_end_to_end_from_real_training(demo_workdir):
    workdir = demo_workdir  # the demo ran (and succeeded) in the fixture, once for the whole session
    table = (workdir / "results/tables/ner_f1.md").read_text()
    config = yaml.safe_load((workdir / "config/config.yaml").read_text())
    models = [config["teacher"]["name"], *config["models"]]
    for model in models:
        assert re.search(rf"^\| {model} +\|( [\d.]+ ± [\d.]+ \(5\) +\|)+$", table, re.MULTILINE), table

    tidy = pd.read_csv(workdir / "results/tables/ner_f1.csv")
    sd = tidy.query("statistic == 'sd' and mode == 'paper'")["value"]
    mean = tidy.query("statistic == 'mean' and mode == 'word'")["value"]
    assert len(sd) == len(models) * len(config["ner"]["datasets"])
    assert (sd > 0).all()  # different seeds give different numbers: the scores come from training
    assert mean.max() > 50  # at least one model really learned the entities

    for model in config["models"]:
        exported = workdir / "results/models" / model
        assert (exported / "config.json").exists() and (exported / "README.md").exists()
        log = (workdir / f"logs/pretrain/{model}.log").read_text()
        assert "Writing model shards" not in log and "\r" not in log  # a log is read, not watched: no bars
        assert (workdir / "results/checkpoints" / model).exists()  # resumable, outside the declared output

    rerun = snakemake("--cores", "2", "-n", cwd=workdir)
    assert "Nothing to be done" in rerun.stdout + rerun.stderr
