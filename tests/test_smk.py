"""Job logs: a retry's log shows this run's failed attempts once each; an earlier run's failure never shows."""

import os
import subprocess
import sys

from compact_biomed import smk

JOB = """
import sys, types
from compact_biomed import smk

def step(_):
    print("output of", sys.argv[2])
    if sys.argv[3] == "fail":
        raise MemoryError("simulated failure of " + sys.argv[2])

smk.run(types.SimpleNamespace(log=[sys.argv[1]], rule="step", threads=1), step)
"""


def attempt(log, run_id: str, name: str, outcome: str) -> int:
    env = {**os.environ, smk.RUN_ID: run_id}
    return subprocess.run([sys.executable, "-c", JOB, str(log), name, outcome], env=env, check=False,
                          capture_output=True).returncode


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
