"""The one place where Snakemake meets the package: logging, threads and clean one-line errors for every job."""

from __future__ import annotations

import os
import socket
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from . import gpus
from .config import ConfigError
from .io import InputError
from .pretrain import Diverged, WorkerError

# Bad input and a diverged pre-training run, reported in one line (a torchrun worker's comes back as WorkerError).
# Not ValueError: one raised inside torch or numpy is a bug and keeps its traceback.
CLEAN_ERRORS = (InputError, ConfigError, FileNotFoundError, Diverged, WorkerError)
# One id per Snakemake run, set by the Snakefile and inherited by its jobs (local or sbatch --export=ALL): it tells
# a retry's `.failed` log (same run) from one an earlier run left behind.
RUN_ID = "COMPACT_BIOMED_RUN_ID"
_earlier_attempts = ""  # what redirect_output put at the top of this attempt's log


def prepend_pythonpath(src: Path) -> None:
    """Put `src` first on the PYTHONPATH that the Snakefile's jobs inherit (once), so each job imports the package
    of the workflow's own clone, whatever its environment holds: a conda environment shared through --conda-prefix
    (same environment.yml, same hash) holds the package of the clone that created it."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(src)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(src), *paths])


def run(snakemake, *steps: Callable[[object], object]) -> None:
    """Run the step named like the job's rule, `step(snakemake)`, with stdout/stderr sent to the rule's log and
    torch limited to the rule's threads. A stage's adapter (workflow/scripts/<stage>.py) passes one step per
    rule of its rules/<stage>.smk.

    Bad input ends the job with one line naming the file and the problem (in the log and on the console)
    instead of a traceback.
    """
    step = {step.__name__: step for step in steps}[snakemake.rule]
    console = os.fdopen(os.dup(2), "w")
    log = snakemake.log[0] if snakemake.log else None
    if log:
        redirect_output(log)
    limit_threads(snakemake.threads)
    quiet_progress_bars()
    try:
        resources = getattr(snakemake, "resources", {})
        gpus.claim_for_job(int(resources.get("gpu", 0)), int(resources.get("gpu_slots", 0)))  # before CUDA starts
        print(job_environment(snakemake), flush=True)
        step(snakemake)
    except CLEAN_ERRORS as error:
        message = f"error: {error}"
        print(message, file=sys.stderr, flush=True)
        print(f"[{snakemake.rule}] {message}", file=console, flush=True)
        keep_failed_log(log)
        sys.exit(1)
    except BaseException:
        traceback.print_exc()
        keep_failed_log(log)
        raise


def redirect_output(log: str) -> None:
    """Send stdout and stderr to the rule's log; this Snakemake run's failed earlier attempts come first.

    Snakemake deletes a job's log before each attempt, so a failure is kept beside it (`.failed`) and put back
    at the top of the retry's log: the error that caused the retry stays visible. A `.failed` left by an earlier
    Snakemake run (another RUN_ID) is removed instead: a later run's log never carries an old failure.
    """
    global _earlier_attempts
    failed = Path(f"{log}.failed")
    earlier = failed.read_text(errors="replace") if failed.exists() else ""
    failed.unlink(missing_ok=True)
    run_id = os.environ.get(RUN_ID, "")
    _earlier_attempts = earlier if run_id and earlier.startswith(failed_header(run_id)) else ""
    handle = open(log, "w", buffering=1)  # noqa: SIM115  (open for the rest of the job)
    if _earlier_attempts:
        handle.write(f"{_earlier_attempts}--- retry ---\n")
    os.dup2(handle.fileno(), 1)  # file-descriptor level, so C extensions and warnings land in the log too
    os.dup2(handle.fileno(), 2)
    sys.stdout = sys.stderr = handle


def keep_failed_log(log: str | None) -> None:
    """Keep this run's failed attempts, each once under its own header, for the retry's log."""
    if log and Path(log).exists():
        sys.stdout.flush()
        text = Path(log).read_text(errors="replace")
        own = text.removeprefix(f"{_earlier_attempts}--- retry ---\n") if _earlier_attempts else text
        header = failed_header(os.environ.get(RUN_ID, ""))
        Path(f"{log}.failed").write_text(f"{_earlier_attempts}{header}{own}")


def failed_header(run_id: str) -> str:
    return f"--- an earlier attempt failed (run {run_id or 'unknown'}); its log: ---\n"


def job_environment(snakemake) -> str:
    """Where the job ran and what it was given: the first line of every log (a cluster job's GPUs show here)."""
    keys = ("SLURM_JOB_ID", "CUDA_VISIBLE_DEVICES")
    seen = " ".join(f"{key}={os.environ[key]}" for key in keys if key in os.environ)
    return f"[{snakemake.rule}] host={socket.gethostname()} threads={snakemake.threads} {seen}".rstrip()


def quiet_progress_bars() -> None:
    """A log is read, not watched: no progress bars (a model's save drew one into it per checkpoint). The
    libraries read the variables when imported; those an adapter imported already are told directly."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # huggingface_hub's and transformers'
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()
    if "datasets" in sys.modules:
        sys.modules["datasets"].disable_progress_bars()


def limit_threads(threads: int) -> None:
    """Cap torch's and the tokenizers' threads to the job's; light jobs that never import torch do not pay its
    2-3 s import for this."""
    os.environ["OMP_NUM_THREADS"] = str(threads)  # read by torch when it is imported later
    os.environ["RAYON_NUM_THREADS"] = str(threads)  # the fast tokenizers' Rust thread pool
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true" if threads > 1 else "false")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)
