"""Runs that survive faults: a kill mid-pre-training, a kill of Snakemake itself, a job that crashes once, changed
inputs under a finished pre-training run."""

import base64
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import REPO, SNAKEMAKE, copy_workflow, fault_env
from conftest import run_snakemake as snakemake
from safetensors.torch import load_file

pytestmark = pytest.mark.slow


def small_config() -> dict:
    """The demo cut down for the cluster and fault tests: one distilled and one continual model, two seeds."""
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["models"] = {name: config["models"][name] for name in ("DistilBioBERT", "BioTinyBERT")}
    config["ner"]["seeds"] = [1, 2]
    config["train_defaults"].update(max_steps=12, save_steps=4, logging_steps=4)
    return config


def fault_config() -> dict:
    """The small config with pre-training long enough to be killed between two checkpoints."""
    config = small_config()
    config["train_defaults"].update(max_steps=60, save_steps=10, logging_steps=10)
    return config


def prepare(tmp_path, name):
    workdir = copy_workflow(tmp_path / name)
    (workdir / "fault.yaml").write_text(yaml.safe_dump(fault_config()))
    return workdir


def start_workflow(workdir) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.Popen(
        [*SNAKEMAKE, "--cores", "2", "--configfile", "fault.yaml"],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for(process, ready, timeout=600):
    deadline = time.time() + timeout
    while not ready():
        assert process.poll() is None, "the workflow ended before the fault could be injected"
        assert time.time() < deadline, "timed out waiting for the moment to inject the fault"
        time.sleep(0.05)


def job_pids(workdir, script: str) -> list[int]:
    """PIDs of the job processes running `script` in `workdir` (read from /proc)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if (
                proc.name.isdigit()
                and script in (proc / "cmdline").read_text()
                and os.readlink(proc / "cwd") == str(workdir)
            ):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def marked_incomplete(workdir) -> set[str]:
    """Outputs of jobs that Snakemake had started but not recorded as finished when it was killed: the next run
    redoes them, rightly, even if the file already exists (their records are named by the base64 of the path)."""
    records = (workdir / ".snakemake/incomplete").glob("*")
    return {base64.urlsafe_b64decode(r.name).decode() for r in records if not r.name.startswith("migration")}


def finished_metrics(workdir) -> list[str]:
    """NER metrics files whose jobs Snakemake has recorded as finished (a file can exist a moment before that)."""
    written = sorted(str(p.relative_to(workdir)) for p in (workdir / "results/ner").glob("*/*/seed*/metrics.json"))
    incomplete = marked_incomplete(workdir)
    return [p for p in written if p not in incomplete]


def mtimes(workdir, paths):
    return {p: (workdir / p).stat().st_mtime_ns for p in paths}


def test_killed_pretraining_resumes_and_gives_the_same_table(tmp_path):
    reference = prepare(tmp_path, "uninterrupted")
    result = snakemake("--cores", "2", "--configfile", "fault.yaml", cwd=reference, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]

    workdir = prepare(tmp_path, "killed")
    checkpoints = workdir / "results/checkpoints/DistilBioBERT"
    finished = ["results/pubmed/corpus.parquet", "results/teacher/config.json", "results/shards/teacher/manifest.json"]
    # SIGKILL the pre-training jobs as soon as DistilBioBERT's first checkpoint is complete (as a node failure or
    # an out-of-memory kill would). The profile's retry reruns them, and they resume from their checkpoints.
    workflow = start_workflow(workdir)
    wait_for(workflow, lambda: any(checkpoints.glob("run-*/checkpoint-10/trainer_state.json")))
    before = mtimes(workdir, finished)
    killed = job_pids(workdir, "pretrain.py")
    assert killed
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    assert workflow.wait(timeout=900) == 0

    assert mtimes(workdir, finished) == before  # finished jobs were not redone
    log = (workdir / "logs/pretrain/DistilBioBERT.log").read_text()
    assert re.search(r"resuming from .*checkpoint-10", log), log[-2000:]  # SIGKILL left no log of the attempt
    assert (workdir / "results/tables/ner_f1.csv").read_text() == (reference / "results/tables/ner_f1.csv").read_text()
    ours, theirs = (load_file(d / "results/models/DistilBioBERT/model.safetensors") for d in (workdir, reference))
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_a_changed_corpus_retrains_from_scratch_and_a_finished_run_is_not_trained_further(tmp_path):
    """Another demo corpus retrains the teacher's tokenizer (ids move) and the shards: `--forcerun pretrain` must
    not resume the old run's checkpoints, and rerunning a finished run must not train it a step further."""
    workdir = copy_workflow(tmp_path / "changed")
    config = small_config()
    (workdir / "small.yaml").write_text(yaml.safe_dump(config))
    target = ["results/models/DistilBioBERT", "--cores", "2", "--configfile", "small.yaml", "--forcerun", "pretrain"]
    model, log = workdir / "results/models/DistilBioBERT", workdir / "logs/pretrain/DistilBioBERT.log"
    assert snakemake(*target, cwd=workdir, timeout=900).returncode == 0
    first = load_file(model / "model.safetensors")

    assert snakemake(*target, cwd=workdir, timeout=900).returncode == 0  # the same inputs: export again, no step
    assert "exporting it, no further training" in log.read_text()
    again = load_file(model / "model.safetensors")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert yaml.safe_load((model / "README.md").read_text().split("---\n")[1])["steps"] == 12

    config["demo"]["citations_per_file"] = 200
    (workdir / "small.yaml").write_text(yaml.safe_dump(config))
    assert snakemake(*target, cwd=workdir, timeout=900).returncode == 0
    text = log.read_text()
    assert "starting afresh" in text and "no complete checkpoint: starting at step 0" in text, text[-2000:]
    changed = load_file(model / "model.safetensors")
    assert first.keys() == changed.keys() and not all(torch.equal(first[k], changed[k]) for k in first)
    assert len(list((workdir / "results/checkpoints/DistilBioBERT").iterdir())) == 2  # the old run is kept


def test_snakemake_killed_mid_dag_finishes_without_redoing_work(tmp_path):
    workdir = prepare(tmp_path, "dag")
    # SIGKILL Snakemake and all its jobs at once (a lost login session, an OOM killer...).
    workflow = start_workflow(workdir)
    wait_for(workflow, lambda: finished_metrics(workdir))  # written *and* recorded as finished by Snakemake
    os.killpg(workflow.pid, signal.SIGKILL)
    workflow.wait()
    done = finished_metrics(workdir)
    assert done
    before = mtimes(workdir, done)

    # A hard kill leaves Snakemake's lock behind: `--unlock` (as the README says), then the same command.
    assert snakemake("--unlock", "--configfile", "fault.yaml", cwd=workdir).returncode == 0
    result = snakemake("--cores", "2", "--configfile", "fault.yaml", cwd=workdir, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert mtimes(workdir, done) == before
    assert not list(workdir.glob("results/**/.*.tmp"))  # no half-written output left behind
    assert (workdir / "results/tables/ner_f1.md").exists()


def test_a_crashed_job_is_retried_and_its_error_stays_in_the_log(tmp_path):
    target = ["results/pubmed/corpus.parquet", "--cores", "2", "--configfile", "fault.yaml"]

    workdir = prepare(tmp_path, "retry")
    crash = fault_env("build_corpus", tmp_path / "crashed-once")
    result = snakemake(*target, "--retries", "1", cwd=workdir, timeout=300, extra_env=crash)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (workdir / "logs/build_corpus.log").read_text()
    assert "an earlier attempt failed" in log and "MemoryError: simulated out of memory in build_corpus" in log
    assert log.index("MemoryError") < log.index("--- retry ---")
    assert (workdir / "results/pubmed/corpus.parquet").exists()

    without_retries = prepare(tmp_path, "no-retry")
    crash = fault_env("build_corpus", tmp_path / "crashes-again")
    result = snakemake(*target, "--retries", "0", cwd=without_retries, timeout=300, extra_env=crash)
    assert result.returncode != 0
    assert "MemoryError: simulated out of memory" in (without_retries / "logs/build_corpus.log.failed").read_text()
    assert not (without_retries / "results/pubmed/corpus.parquet").exists()

    # The next run, without the fault, succeeds: its log has no old failure.
    result = snakemake(*target, cwd=without_retries, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MemoryError" not in (without_retries / "logs/build_corpus.log").read_text()
    assert not (without_retries / "logs/build_corpus.log.failed").exists()
