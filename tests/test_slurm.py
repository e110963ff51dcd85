"""The SLURM profile on a real SLURM (`.ci/slurm-up` starts a one-node cluster with 4 fake GPUs).

The profile is used as a user would: its EDIT placeholders replaced, its per-rule sizes scaled down to this
node, its GPU requests kept, so a typo in them fails here rather than on a user's first run.
"""

import re
import shutil
import subprocess

import pytest
import yaml

from conftest import copy_workflow
from conftest import run_snakemake as snakemake
from test_faults import small_config

pytestmark = pytest.mark.slow


def slurm_is_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True)
    return states.returncode == 0 and any(s in states.stdout for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="module")
def cluster():
    if not slurm_is_up():
        pytest.skip("no running SLURM cluster (start one with .ci/slurm-up)")
    return subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True).stdout.split()[0].rstrip("*")


def user_profile(workdir, partition):
    """profiles/slurm as a user would edit it for the local cluster: placeholders filled in (no accounting, so
    no account), sizes scaled down to this 8-CPU node, the GPU counts left as they are."""
    path = workdir / "profiles/slurm/config.yaml"
    profile = yaml.safe_load(path.read_text())
    resources = profile["default-resources"]
    del resources["slurm_account"]
    resources["slurm_partition"] = resources["gpu_partition"] = partition
    for rule in profile["set-resources"].values():
        rule.update({key: value for key, value in (("slurm_partition", partition), ("mem_mb", 1500),
                                                   ("cpus_per_gpu", 1), ("cpus_per_task", 1), ("runtime", 30))
                     if key in rule})
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    path.write_text(yaml.safe_dump(profile))
    return profile


def test_demo_dag_runs_through_the_slurm_profile(tmp_path, cluster):
    workdir = copy_workflow(tmp_path)
    user_profile(workdir, cluster)
    (workdir / "small.yaml").write_text(yaml.safe_dump(small_config()))
    result = snakemake("--workflow-profile", "profiles/slurm", "--configfile", "small.yaml", "--slurm-no-account",
                       "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "1",
                       "--seconds-between-status-checks", "2", "--jobs", "4", cwd=workdir, timeout=1200)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert (workdir / "results/tables/ner_f1.md").exists()
    # The profile's GPU requests reached sbatch and SLURM granted them: each training job saw exactly one GPU.
    for model in small_config()["models"]:
        assert re.search(r"CUDA_VISIBLE_DEVICES=\d$", (workdir / f"logs/pretrain/{model}.log").read_text(),
                         re.MULTILINE)
    finetune_log = (workdir / "logs/finetune_ner/BioBERT/demo-disease/seed1.log").read_text()
    assert re.search(r"CUDA_VISIBLE_DEVICES=\d$", finetune_log, re.MULTILINE)
    assert "SLURM_JOB_ID=" in (workdir / "logs/build_corpus.log").read_text()
