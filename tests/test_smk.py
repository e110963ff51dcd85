"""Job logs: a retry's log shows this run's failed attempts once each; an earlier run's failure never shows; bad input
is one line, a library's error keeps its traceback."""

import os
import subprocess
import sys

from compact_biomed import smk

JOB = """
import sys, types
import numpy as np
from compact_biomed import smk
from compact_biomed.io import InputError

def step(_):
    print("output of", sys.argv[2])
    if sys.argv[3] == "fail":
        raise MemoryError("simulated failure of " + sys.argv[2])
    if sys.argv[3] == "bad input":
        raise InputError("data/train.tsv", "line 3: empty token")
    if sys.argv[3] == "bug":
        np.arange(3).reshape(2, 2)  # a bug's ValueError, raised inside numpy

smk.run(types.SimpleNamespace(log=[sys.argv[1]], rule="step", threads=1), step)
"""


def attempt(log, run_id: str, name: str, outcome: str) -> int:
    return job(log, run_id, name, outcome).returncode


def job(log, run_id: str, name: str, outcome: str) -> subprocess.CompletedProcess:
    env = {**os.environ, smk.RUN_ID: run_id}
    return subprocess.run(
        [sys.executable, "-c", JOB, str(log), name, outcome], env=env, check=False, capture_output=True, text=True
    )


def test_retries_show_each_failed_attempt_once(tmp_path):
    log = tmp_path / "job.log"
    assert attempt(log, "run-1", "attempt-1", "fail") == 1
    assert attempt(log, "run-1", "attempt-2", "fail") == 1
    assert attempt(log, "run-1", "attempt-3", "ok") == 0
    text = log.read_text()
    assert text.count("an earlier attempt failed") == 2 and text.count("--- retry ---") == 1
    assert text.count("simulated failure of attempt-1") == text.count("simulated failure of attempt-2") == 1
    assert text.index("attempt-1") < text.index("attempt-2") < text.index("--- retry ---") < text.index("attempt-3")
    assert not (tmp_path / "job.log.failed").exists()


def test_a_later_run_does_not_carry_an_earlier_runs_failure(tmp_path):
    log = tmp_path / "job.log"
    assert attempt(log, "run-1", "first run", "fail") == 1
    assert "simulated failure of first run" in (tmp_path / "job.log.failed").read_text()
    assert attempt(log, "run-2", "second run", "ok") == 0
    text = log.read_text()
    assert "first run" not in text and "earlier attempt" not in text and "output of second run" in text
    assert not (tmp_path / "job.log.failed").exists()


def test_bad_input_is_one_line_and_a_library_error_keeps_its_traceback(tmp_path):
    bad_input = job(tmp_path / "input.log", "run-1", "a job", "bad input")
    assert bad_input.returncode == 1
    assert bad_input.stderr == "[step] error: data/train.tsv: line 3: empty token\n"  # the console's one line
    log = (tmp_path / "input.log").read_text()
    assert log.endswith("output of a job\nerror: data/train.tsv: line 3: empty token\n") and "Traceback" not in log

    bug = job(tmp_path / "bug.log", "run-1", "a job", "bug")
    assert bug.returncode == 1
    log = (tmp_path / "bug.log").read_text()
    assert "Traceback (most recent call last)" in log and "reshape" in log
    assert "ValueError: cannot reshape array" in log and "error: cannot reshape" not in log
