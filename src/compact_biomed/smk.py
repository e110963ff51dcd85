"""The one place where Snakemake meets the package: logging, threads and clean one-line errors for every job."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

from .config import ConfigError
from .io import InputError

CLEAN_ERRORS = (InputError, ConfigError, FileNotFoundError, ValueError)


def run(snakemake, step: Callable[[object], object]) -> None:
    """Run `step(snakemake)` with stdout/stderr sent to the rule's log and torch limited to the rule's threads.

    Bad input ends the job with one line naming the file and the problem (in the log and on the console)
    instead of a traceback.
    """
    console = os.fdopen(os.dup(2), "w")
    if snakemake.log:
        log = open(snakemake.log[0], "w", buffering=1)
        os.dup2(log.fileno(), 1)  # file-descriptor level, so C extensions and warnings land in the log too
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
    limit_threads(snakemake.threads)
    try:
        step(snakemake)
    except CLEAN_ERRORS as error:
        message = f"error: {error}"
        print(message, file=sys.stderr, flush=True)
        print(f"[{snakemake.rule}] {message}", file=console, flush=True)
        sys.exit(1)


def limit_threads(threads: int) -> None:
    """Cap torch's threads; light jobs that never import torch do not pay its 2-3 s import for this."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when it is imported later
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
