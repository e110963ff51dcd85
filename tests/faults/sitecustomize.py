"""Fault injection for the fault tests, never on a production path: `conftest.fault_env` puts this folder on the
PYTHONPATH of a Snakemake run, and Python imports `sitecustomize` at the start of every process, so every job
(a separate process, started locally or through sbatch --export=ALL) gets it.

With COMPACT_BIOMED_TEST_FAULT="<rule>:<marker file>", the step of that rule fails with MemoryError, as an
out-of-memory crash would, while the marker does not exist, and creates it: the first attempt fails, a retry
succeeds. The failure is raised inside `compact_biomed.smk.run`, where a real step's error would be.
"""

import functools
import os
from pathlib import Path

FAULT = "COMPACT_BIOMED_TEST_FAULT"
rule, _, marker = os.environ.get(FAULT, "").partition(":")

if rule and marker:
    from compact_biomed import smk

    real_run = smk.run

    def fails_once(step):
        @functools.wraps(step)  # smk.run picks the step by its name
        def wrapped(snakemake):
            if step.__name__ == rule and not Path(marker).exists():
                Path(marker).touch()
                raise MemoryError(f"simulated out of memory in {rule} ({FAULT})")
            return step(snakemake)

        return wrapped

    @functools.wraps(real_run)
    def run(snakemake, *steps):
        real_run(snakemake, *map(fails_once, steps))

    smk.run = run  # before the adapter's `from compact_biomed.smk import run`
