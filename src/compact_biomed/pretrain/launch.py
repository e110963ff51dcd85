"""Run pre-training in this process, or across every GPU of the job with torchrun.

A SLURM job that holds several GPUs runs one process per GPU (`torch.distributed.run --standalone`); the
Trainer then splits each step over them and the gradient accumulation keeps the global batch as configured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def torchrun_command(args_file: str | Path, nproc: int) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "compact_biomed.pretrain.launch", str(args_file)]


def run_pretraining(kwargs: dict, gpus_requested: int) -> None:
    """`train.run(**kwargs)`, spread over min(requested, visible) GPUs when that is more than one."""
    nproc = min(gpus_requested, visible_gpus())
    if nproc <= 1:
        from . import train

        train.run(**kwargs)
        return
    args_file = Path(kwargs["checkpoint_dir"]) / "launch_args.json"
    args_file.parent.mkdir(parents=True, exist_ok=True)
    args_file.write_text(json.dumps(kwargs, indent=2))
    command = torchrun_command(args_file, nproc)
    print(" ".join(command), file=sys.stderr, flush=True)
    subprocess.run(command, check=True)


if __name__ == "__main__":  # one torchrun worker
    from . import train

    train.run(**json.loads(Path(sys.argv[1]).read_text()))
