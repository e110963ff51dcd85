"""Pre-training across every GPU of the job with torchrun: the command, and the settings its workers read.

A SLURM job that holds several GPUs runs one process per GPU (`torch.distributed.run --standalone`); the
Trainer then splits each step over them and the gradient accumulation keeps the global batch as configured.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

from . import Settings, TrainSettings, run

SETTINGS_FILE = "launch_args.json"  # in the checkpoint folder, beside the runs


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
    """`run(settings)` in `nproc` torchrun workers, one per GPU."""
    settings_file = Path(settings.checkpoint_dir) / SETTINGS_FILE
    write_settings(settings, settings_file)
    command = torchrun_command(settings_file, nproc)
    print(" ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


if __name__ == "__main__":  # one torchrun worker
    run(read_settings(sys.argv[1]))
