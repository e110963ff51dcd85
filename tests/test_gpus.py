"""A GPU of its own for each local GPU job on a workstation with several (compact_biomed.gpus): claims by jobs
that are real processes, as Snakemake's are, holding them until they end."""

import subprocess
import sys
import time

import pytest

from compact_biomed import gpus
from compact_biomed.config import ConfigError

JOB = """
import sys, time
from pathlib import Path
from compact_biomed import gpus
out, stop, whole, shared, folder = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
out.write_text(",".join(gpus.claim(["0", "1"], 4, whole, shared, Path(folder), poll_seconds=0.05)))
while not stop.exists():
    time.sleep(0.02)
"""


def start(tmp_path, name: str, whole: int, shared: int):
    """A job claiming `whole` GPUs or `shared` slots of 2 GPUs of 4 slots; it ends when its stop file appears."""
    out, stop = tmp_path / f"{name}.out", tmp_path / f"{name}.stop"
    args = [sys.executable, "-c", JOB, out, stop, str(whole), str(shared), tmp_path / "locks"]
    return subprocess.Popen(args), out, stop


def claimed(out, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while not out.exists() or not out.read_text():
        assert time.monotonic() < deadline, f"{out.name}: no claim"
        time.sleep(0.02)
    return out.read_text()


def end(*jobs) -> None:
    for process, _, stop in jobs:
        stop.touch()
        process.wait(timeout=30)


def test_fine_tunings_spread_over_the_gpus_until_a_whole_gpu_job_waits(tmp_path):
    first = start(tmp_path, "ner1", 0, 1)
    assert claimed(first[1]) == "0"
    second = start(tmp_path, "ner2", 0, 1)
    assert claimed(second[1]) == "1"  # the emptiest GPU: both at work
    pretrain = start(tmp_path, "pretrain", 1, 0)  # a whole GPU: none is free while fine-tunings hold slots of both
    time.sleep(1)
    assert not pretrain[1].exists() or not pretrain[1].read_text()
    third = start(tmp_path, "ner3", 0, 1)
    assert claimed(third[1]) == "0"  # while it waits, the fullest GPU with room: GPU 1 can come free
    end(second)  # its lock goes with its process
    assert claimed(pretrain[1]) == "1"
    end(first, third, pretrain)


def test_a_killed_job_frees_its_gpu(tmp_path):
    job = start(tmp_path, "killed", 2, 0)
    assert claimed(job[1]) == "0,1"
    job[0].kill()
    job[0].wait(timeout=30)
    again = start(tmp_path, "again", 2, 0)
    assert claimed(again[1]) == "0,1"
    end(again)


def test_a_job_sees_only_its_claim_among_the_devices_the_user_listed(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert gpus.claim_for_job(gpu=1, gpu_slots=4) is None  # no ENV: one GPU, or a cluster job; nothing changes
    monkeypatch.setenv(gpus.ENV, f"2 4 {tmp_path / 'locks'}")
    assert gpus.claim_for_job(gpu=0, gpu_slots=0) is None  # not a GPU job
    try:
        assert gpus.claim_for_job(gpu=1, gpu_slots=4) == "5"
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # the next job's environment, as the run gave it
        assert gpus.claim_for_job(gpu=0, gpu_slots=1) == "7"  # 5 is whole-claimed: no slot left there
    finally:
        gpus.release()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert gpus.claim_for_job(gpu=1, gpu_slots=4) == "5"
    gpus.release()
    with pytest.raises(ConfigError, match="a job holding gpu=2 needs gpu_slots=8"):  # it would lock 8, counted 4
        gpus.claim_for_job(gpu=2, gpu_slots=4)


def test_resources_the_machine_cannot_give_are_named(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert gpus.settings_problem(2, 16) == (
        "--resources gpu=2: this machine shows 1 GPU(s) (nvidia-smi -L, or CUDA_VISIBLE_DEVICES)"
    )
    assert "give every GPU as many slots (8 each: gpu_slots=16)" in gpus.settings_problem(2, 15)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,4")
    assert gpus.settings_problem(2, 16) is None


@pytest.mark.parametrize(
    "listed, count, expected",
    [(None, 3, ["0", "1", "2"]), ("3, 1,2", 2, ["3", "1"]), ("", 2, []), ("0,-1,1", 3, ["0"])],
)
def test_devices_are_the_listed_ones_or_the_first(monkeypatch, listed, count, expected):
    if listed is None:
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    else:
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert gpus.devices(count) == expected  # CUDA sees none where the variable is empty, and stops at a -1
