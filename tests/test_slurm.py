"""The SLURM profile on a real SLURM (`.ci/slurm-up` starts a one-node cluster with 4 fake GPUs).

The profile is used as a user would: its EDIT placeholders replaced, its per-rule sizes scaled down to this
node, its GPU requests kept, so a typo in them fails here rather than on a user's first run.
"""

import os
import re
import shutil
import subprocess

import pytest
import yaml
from conftest import REPO, SNAKEMAKE, copy_workflow, fault_env
from conftest import run_snakemake as snakemake
from test_faults import small_config

from compact_biomed.pretrain.cost import pretrain_runtime_minutes

# How both cluster runs submit: the profile, the small config, and a cluster without accounting
SLURM_OPTIONS = [
    "--workflow-profile",
    "profiles/slurm",
    "--configfile",
    "small.yaml",
    "--slurm-no-account",
    "--slurm-status-command",
    "squeue",
    "--slurm-init-seconds-before-status-checks",
    "1",
    "--seconds-between-status-checks",
    "2",
    "--jobs",
    "4",
]

pytestmark = pytest.mark.slow


def slurm_is_up() -> bool:
    if not shutil.which("sinfo"):
        return False
    states = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, check=False)
    return states.returncode == 0 and any(s in states.stdout for s in ("idle", "mixed", "allocated"))


@pytest.fixture(scope="module")
def cluster():
    if not slurm_is_up():
        pytest.skip("no running SLURM cluster (start one with .ci/slurm-up)")
    return (
        subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True)
        .stdout.split()[0]
        .rstrip("*")
    )


def user_profile(workdir, partition):
    """profiles/slurm as a user would edit it for the local cluster: placeholders filled in (no accounting, so
    no account), sizes scaled down to this 8-CPU node, the GPU counts left as they are."""
    path = workdir / "profiles/slurm/config.yaml"
    profile = yaml.safe_load(path.read_text())
    resources = profile["default-resources"]
    del resources["slurm_account"]
    resources["slurm_partition"] = resources["gpu_partition"] = partition
    for rule in profile["set-resources"].values():
        rule.update(
            {
                key: value
                for key, value in (("slurm_partition", partition), ("mem_mb", 1500), ("runtime", 30))
                if key in rule
            }
        )
    profile["set-threads"] = {rule: 1 for rule in profile["set-threads"]}
    path.write_text(yaml.safe_dump(profile))
    return profile


def test_demo_dag_runs_through_the_slurm_profile(tmp_path, cluster):
    workdir = copy_workflow(tmp_path)
    user_profile(workdir, cluster)
    (workdir / "small.yaml").write_text(yaml.safe_dump(small_config()))
    result = snakemake(
        *SLURM_OPTIONS,
        cwd=workdir,
        timeout=1200,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    assert (workdir / "results/tables/ner_f1.md").exists()
    # The profile's GPU requests reached sbatch and SLURM granted them: each training job saw exactly one GPU.
    for model in small_config()["models"]:
        assert re.search(
            r"CUDA_VISIBLE_DEVICES=\d$", (workdir / f"logs/pretrain/{model}.log").read_text(), re.MULTILINE
        )
    finetune_log = (workdir / "logs/finetune_ner/BioBERT/demo-disease/seed1.log").read_text()
    assert re.search(r"CUDA_VISIBLE_DEVICES=\d$", finetune_log, re.MULTILINE)
    assert "SLURM_JOB_ID=" in (workdir / "logs/build_corpus.log").read_text()


def scaled_profile(workdir, partition):
    """profiles/slurm with its placeholders filled in and its sizes scaled to this 8-CPU node, the `attempt`
    expressions kept: memory / 16, a quarter of the threads (pre-training's 32 become 8, one per CPU)."""
    path = workdir / "profiles/slurm/config.yaml"
    profile = yaml.safe_load(path.read_text())
    del profile["default-resources"]["slurm_account"]
    profile["default-resources"].update(slurm_partition=partition, gpu_partition=partition)
    for rule in profile["set-resources"].values():
        if "slurm_partition" in rule:
            rule["slurm_partition"] = partition
        if "mem_mb" in rule:
            mem = rule["mem_mb"]
            rule["mem_mb"] = mem // 16 if isinstance(mem, int) else re.sub(r"^\d+", lambda m: str(int(m[0]) // 16), mem)
    profile["set-threads"] = {rule: max(1, threads // 4) for rule, threads in profile["set-threads"].items()}
    profile["set-threads"]["tokenize_shard"] = 2  # one rule above one CPU without a GPU
    path.write_text(yaml.safe_dump(profile))
    return profile


def requested(profile, rule, key, attempt):
    """What the profile asks for `rule`: its own value, else the default, evaluated for the attempt."""
    value = profile["set-resources"].get(rule, {}).get(key, profile["default-resources"].get(key))
    return None if value is None else eval(str(value), {"attempt": attempt})


def granted(job_id: str) -> dict[str, str]:
    """The submitted job as SLURM holds it (`scontrol show job`): NumCPUs, TRES, TimeLimit..."""
    shown = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, check=True)
    return dict(field.split("=", 1) for field in shown.stdout.split() if "=" in field)


def minutes(limit: str) -> int:
    days, _, clock = limit.rpartition("-")
    hours, mins, _ = clock.split(":")
    return int(days or 0) * 1440 + int(hours) * 60 + int(mins)


def test_profile_cpus_gpus_memory_and_time_reach_sbatch(tmp_path, cluster):
    workdir = copy_workflow(tmp_path)
    profile = scaled_profile(workdir, cluster)
    config = small_config()
    config["models"] = {"DistilBioBERT": config["models"]["DistilBioBERT"]}
    config["ner"]["seeds"] = [1]
    config["train_defaults"].update(max_steps=2, save_steps=2, logging_steps=1)
    (workdir / "small.yaml").write_text(yaml.safe_dump(config))
    # The inputs of the SLURM jobs, built locally; then a CPU job, a 4-GPU and a 1-GPU job through the profile.
    local = snakemake(
        "results/teacher",
        "resources/demo/ner/demo-disease/train.tsv",
        "--cores",
        "2",
        "--configfile",
        "small.yaml",
        cwd=workdir,
    )
    assert local.returncode == 0, local.stderr[-3000:]
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        **fault_env("finetune_ner", tmp_path / "failed-once"),
    }  # one retry, bigger
    command = [
        *SNAKEMAKE,
        "results/models/DistilBioBERT",
        "results/ner/BioBERT/demo-disease/seed1/metrics.json",
        *SLURM_OPTIONS,
    ]
    jobs, lines = [], []
    with subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as run:
        for line in run.stdout:  # read each job while SLURM still holds it (it forgets finished ones)
            lines.append(line)
            if submitted := re.search(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/([^/]+)/", line):
                jobs.append((submitted[2], submitted[3], granted(submitted[1])))
            elif group := re.search(r"submitted with SLURM jobid (\d+) \(log: \S*/group_ner_gpu_(\w+)/", line):
                jobs.append((group[2], "group", granted(group[1])))  # fine-tunings go in group jobs
    assert run.returncode == 0, "".join(lines)[-6000:]

    attempts = {}
    for rule, wildcards, job in jobs:
        attempts[rule, wildcards] = attempt = attempts.get((rule, wildcards), 0) + 1
        gres = profile["set-resources"].get(rule, {}).get("gres")  # "gpu:N": not summed over a group's jobs
        gpus = int(gres.split(":")[-1]) if gres else requested(profile, rule, "gpu", attempt)
        threads = profile["set-threads"].get(rule, 1)
        assert job["NumCPUs"] == str(threads), (rule, job)
        tres = job.get("TresPerJob") or job.get("TresPerNode") or "none"
        assert tres.replace("gres/", "gres:") == (f"gres:gpu:{gpus}" if gpus else "none"), (rule, job)
        assert job["MinMemoryNode"] == f"{requested(profile, rule, 'mem_mb', attempt)}M", (rule, job)
        runtime = (
            pretrain_runtime_minutes(config, wildcards.split("=")[-1])  # the same for a retry: it resumes
            if rule == "pretrain"
            else requested(profile, rule, "runtime", attempt)
        )  # pre-training's from its measured speed
        assert minutes(job["TimeLimit"]) == runtime, (rule, job)
    assert sorted(attempts.values()) == [1, 1, 1, 1, 2]  # two shards, manifest, pretrain; finetune_ner retried
    grown = [job for rule, _, job in jobs if rule == "finetune_ner"]
    assert minutes(grown[1]["TimeLimit"]) == 2 * minutes(grown[0]["TimeLimit"])  # the retry asked for more
    assert int(grown[1]["MinMemoryNode"].rstrip("M")) == 2 * int(grown[0]["MinMemoryNode"].rstrip("M"))


GROUP_SNAKEFILE = """
rule all:
    input: expand("results/ner/{i}.txt", i=[1, 2, 3])

rule finetune_ner:  # the profile groups it; the last of the three to run fails while `failing` exists
    output: "results/ner/{i}.txt"
    shell: "if [ -e failing ] && [ $(ls results/ner | wc -l) -ge 2 ]; then exit 1; fi; echo done > {output}"
"""


def test_a_failed_group_job_keeps_the_fine_tunings_it_finished(tmp_path, cluster):
    """Fine-tunings share GPU jobs (the profile's groups): one failing there (a bad dataset, a time limit) made
    Snakemake delete the outputs of those the group had finished, hours of work; they stay, and only the failed
    one runs again."""
    (tmp_path / "profiles").mkdir()
    shutil.copytree(REPO / "profiles/slurm", tmp_path / "profiles/slurm")
    user_profile(tmp_path, cluster)
    (tmp_path / "Snakefile").write_text(GROUP_SNAKEFILE)
    (tmp_path / "failing").touch()
    options = [*SLURM_OPTIONS[:2], *SLURM_OPTIONS[4:], "--retries", "0"]  # no config file here
    result = snakemake(*options, cwd=tmp_path, timeout=300)
    assert result.returncode != 0 and "Error in group ner_gpu" in result.stdout + result.stderr
    assert len(list((tmp_path / "results/ner").iterdir())) == 2  # two finished before the third failed
    (tmp_path / "failing").unlink()
    plan = snakemake(*options, "-n", cwd=tmp_path)
    assert re.search(r"^finetune_ner +1$", plan.stdout, re.MULTILINE), plan.stdout[-3000:]
