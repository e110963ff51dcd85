"""A GPU of its own for each local GPU job on a workstation with several (compact_biomed.gpus): claims by jobs
that are real processes, as Snakemake's are, holding them until they end."""

import subprocess
import sys
import time

import pytest

from compact_biomed import gpus

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


def test_fine_tunings_fill_one_gpu_and_leave_the_other_whole_for_pre_training(tmp_path):
    first, second = start(tmp_path, "ner1", 0, 1), start(tmp_path, "ner2", 0, 1)
    assert claimed(first[1]) == "0" and claimed(second[1]) == "0"  # the fullest GPU with room, not one each
    pretrain = start(tmp_path, "pretrain", 1, 0)
    assert claimed(pretrain[1]) == "1"
    waiting = start(tmp_path, "stats", 1, 0)  # a whole GPU: none is free while the fine-tunings hold slots of 0
    time.sleep(1)
    assert not waiting[1].exists() or not waiting[1].read_text()
    end(first, second)  # their locks go with their processes
    assert claimed(waiting[1]) == "0"
    end(pretrain, waiting)


def test_a_killed_job_frees_its_gpu(tmp_path):
    job = start(tmp_path, "killed", 2, 0)
    assert claimed(job[1]) == "0,1"
    job[0].kill()
    job[0].wait(timeout=30)
    again = start(tmp_path, "again", 2, 0)
    assert claimed(again[1]) == "0,1"
    end(again)


def test_a_job_sees_only_its_claim_among_the_devices_the_user_listed(tmp_path, monkeypatch):
    monkeypatch.setattr(gpus, "lock_dir", lambda: tmp_path / "locks")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert gpus.claim_for_job(gpu=1, gpu_slots=4) is None  # no ENV: one GPU, or a cluster job; nothing changes
    assert gpus.claim_for_job(gpu=0, gpu_slots=0) is None
    monkeypatch.setenv(gpus.ENV, "2 4")
    try:
        assert gpus.claim_for_job(gpu=1, gpu_slots=4) == "5"
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # the next job's environment, as the run gave it
        assert gpus.claim_for_job(gpu=0, gpu_slots=1) == "7"  # 5 is whole-claimed: no slot left there
    finally:
        gpus.release()
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    assert gpus.claim_for_job(gpu=1, gpu_slots=4) == "5"
    gpus.release()


@pytest.mark.parametrize("listed, count, expected", [("", 3, ["0", "1", "2"]), ("3, 1,2", 2, ["3", "1"])])
def test_devices_are_the_listed_ones_or_the_first(monkeypatch, listed, count, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", listed)
    assert gpus.devices(count) == expected
