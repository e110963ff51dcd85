"""Pre-training across every GPU of the job with torchrun: the command, the settings its workers read, and the
one-line error a worker leaves for the job.

A job that holds several GPUs (on SLURM, or locally with `--set-resources pretrain:gpu=N`) runs one process per GPU
(`torch.distributed.run --standalone`); the Trainer then splits each step over them and the gradient accumulation
keeps the global batch as configured.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from ..io import InputError, write_text
from . import Settings, TrainSettings, WorkerError, run

SETTINGS_FILE = "launch_args.json"  # in the checkpoint folder, beside the runs
ERROR_FILE = "launch_error.txt"  # there too: a worker's one-line error, for the launching process


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def torchrun_command(settings_file: str | Path, nproc: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc_per_node={nproc}",
        "-m",
        "compact_biomed.pretrain.launch",
        str(settings_file),
    ]


def write_settings(settings: Settings, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dataclasses.asdict(settings), indent=2))


def read_settings(path: str | Path) -> Settings:
    values = json.loads(Path(path).read_text())
    return Settings(**{**values, "shard_dirs": tuple(values["shard_dirs"]), "train": TrainSettings(**values["train"])})


def torchrun(settings: Settings, nproc: int) -> None:
    """`run(settings)` in `nproc` torchrun workers, one per GPU; a worker's one-line error is raised here again."""
    settings_file = Path(settings.checkpoint_dir) / SETTINGS_FILE
    write_settings(settings, settings_file)
    error_file = settings_file.with_name(ERROR_FILE)
    error_file.unlink(missing_ok=True)  # an earlier launch's
    command = torchrun_command(settings_file, nproc)
    print(" ".join(command), file=sys.stderr, flush=True)
    try:
        subprocess.run(command, check=True)
    except subprocess.CalledProcessError:
        if not error_file.is_file():
            raise
        line = error_file.read_text().strip()
        error_file.unlink()
        raise WorkerError(line) from None


def worker(settings_file: str) -> None:
    """One torchrun worker: `run` the settings, leaving a clean error's line for the launcher. Every worker writes
    it (atomically; the workers run the same checks), as torchrun stops the others once one has failed."""
    from ..smk import CLEAN_ERRORS

    try:
        run(read_settings(settings_file))
    except CLEAN_ERRORS as error:
        with contextlib.suppress(OSError, InputError):  # not written: the launcher reports torchrun's failure
            write_text(Path(settings_file).with_name(ERROR_FILE), f"{error}\n")
        raise


if __name__ == "__main__":
    worker(sys.argv[1])
