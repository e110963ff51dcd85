"""Resumable pre-training runs: each run's checkpoints in a folder named by the content of its inputs (`run_dir`),
so changed inputs start afresh and never resume an old run; resume from the newest COMPLETE checkpoint; a finished
run is exported again from its last checkpoint, never trained on; a diverged run is not retried.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

from ..io import InputError, folder_digest
from ..shards import STATS_NAME
from . import Diverged, Settings

RUN_FINGERPRINT_FILE = "run.json"
DIVERGED_FILE = "diverged.txt"  # in a run's folder: the line its divergence ended with (train.StopIfDiverged)
CHECKPOINT_RE = re.compile(r"checkpoint-(\d+)")
RUN_DIR_PREFIX = "run-"
# What from_pretrained reads from a model folder (weights, config, tokenizer files); hashed into the run's key.
MODEL_FILE_PATTERNS = ("*.safetensors", "*.bin", "*.json", "*.txt", "*.model")

# Settings that change what is learned: a checkpoint_dir written with other values must not be resumed. Left out
# with the other speed settings: `compile`, the same computation (only dropout draws from inductor's own generator),
# and `packing`, the same computation on fewer rows (dropout drawn per row), so a resumed run may switch them.
FINGERPRINT_TRAIN_KEYS = (
    "max_steps",
    "global_batch_size",
    "learning_rate",
    "warmup_steps",
    "weight_decay",
    "lr_scheduler",
    "mlm_probability",
    "teacher_dropout",
    "max_grad_norm",
)


def check_not_diverged(run: Path) -> None:
    """A diverged run, retried, resumes its last checkpoint on the same batches and diverges at the same step: so a
    retry (Snakemake's retries, SLURM's requeue) stops at once, before any model loads."""
    marker = run / DIVERGED_FILE
    if marker.is_file():
        raise Diverged(
            f"{marker.read_text().strip()}. That was an earlier attempt of this run, so this one stopped at once: "
            f"delete {marker} to retry it anyway (from its last checkpoint, if any)"
        )


def is_complete_checkpoint(path: Path) -> bool:
    """Trainer writes trainer_state.json last; also require the weights, optimizer, scheduler and RNG states."""
    required = ("config.json", "optimizer.pt", "scheduler.pt")
    if not all((path / name).is_file() for name in required):
        return False
    if not any(path.glob("model*.safetensors")) or not any(path.glob("rng_state*.pth")):
        return False
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def checkpoint_dirs(checkpoint_dir: str | Path) -> list[Path]:
    """checkpoint-N directories, oldest first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and CHECKPOINT_RE.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(CHECKPOINT_RE.fullmatch(p.name).group(1)))


def latest_complete_checkpoint(checkpoint_dir: str | Path) -> str | None:
    complete = [p for p in checkpoint_dirs(checkpoint_dir) if is_complete_checkpoint(p)]
    return str(complete[-1]) if complete else None


def remove_incomplete_checkpoints(checkpoint_dir: str | Path) -> None:
    """A job killed while saving leaves a partial checkpoint-N; Trainer would later write into it or rotate it."""
    for path in checkpoint_dirs(checkpoint_dir):
        if not is_complete_checkpoint(path):
            shutil.rmtree(path, ignore_errors=True)


def shard_digest(shard_dir: str | Path) -> str:
    """The content checksum tokenize_shard recorded (also in the manifest), else the hash of the shard's files."""
    stats = Path(shard_dir) / STATS_NAME
    if stats.is_file():
        return json.loads(stats.read_text())["sha256"]
    return folder_digest(shard_dir, ("*.arrow", "dataset_info.json"))


def run_fingerprint(settings: Settings) -> dict:
    """What the trained weights depend on: the CONTENT of the teacher / start model and of the shards (in order),
    and the settings. Paths are left out: a moved folder still resumes, a changed file at the same path does not."""
    teacher_dir, start_dir = settings.teacher_dir, settings.start_dir
    return {
        "recipe": settings.recipe,
        "seed": settings.seed,
        "student": settings.student or {},
        "teacher": folder_digest(teacher_dir, MODEL_FILE_PATTERNS) if teacher_dir else None,
        "start": folder_digest(start_dir, MODEL_FILE_PATTERNS) if start_dir else None,
        "shards": [shard_digest(shard_dir) for shard_dir in settings.shard_dirs],
        **{key: getattr(settings.train, key) for key in FINGERPRINT_TRAIN_KEYS},
        # bf16 and fp32 learn differently; "auto" (the default) is left out, so runs keyed before this keep their key
        **({"precision": settings.train.precision} if settings.train.precision != "auto" else {}),
    }


def run_dir(checkpoint_dir: str | Path, fingerprint: dict) -> Path:
    """The run's own checkpoint folder, named by its fingerprint's hash."""
    key = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:16]
    return Path(checkpoint_dir) / f"{RUN_DIR_PREFIX}{key}"


def open_run_dir(checkpoint_dir: str | Path, fingerprint: dict) -> Path:
    """Create the run's checkpoint folder (with its fingerprint) if new, and say in the log when the inputs or
    settings changed since an earlier run. The earlier runs' checkpoints are left as they are: they are resumed
    again if their inputs come back, and only the user deletes them."""
    run = run_dir(checkpoint_dir, fingerprint)
    path = run / RUN_FINGERPRINT_FILE
    if path.is_file():
        return run
    if checkpoint_dirs(checkpoint_dir):
        print(
            f"{checkpoint_dir} holds checkpoints of an earlier version, which did not record the content of their "
            f"inputs: they are not resumed and are left as they are",
            flush=True,
        )
    others = sorted(Path(checkpoint_dir).glob(f"{RUN_DIR_PREFIX}*/{RUN_FINGERPRINT_FILE}"), key=os.path.getmtime)
    if others:
        previous = json.loads(others[-1].read_text())
        changed = sorted(k for k in set(previous) | set(fingerprint) if previous.get(k) != fingerprint.get(k))
        print(
            f"inputs or settings changed since the run in {others[-1].parent} ({', '.join(changed)}): starting "
            f"afresh in {run}; the earlier run's checkpoints are kept (delete them to free the disk)",
            flush=True,
        )
    run.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fingerprint, indent=2, sort_keys=True) + "\n")
    return run


LOCK_FILE = "training.lock"
_held_locks = {}  # run folder -> its lock file, open for the process's life: closing it would let the lock go


def lock_run(run: Path) -> None:
    """Hold the run's lock while this process lives (taken again by the same process: a no-op). Two trainers on one
    run folder (a job whose Snakemake was killed still training when the rerun starts) would rotate each other's
    checkpoints: the second stops here in one line naming the first. The lock goes with the process, however it
    ends."""
    import fcntl
    import socket

    key = str(run.resolve())
    if key in _held_locks:
        return
    handle = open(run / LOCK_FILE, "a+")  # noqa: SIM115  (held until the process ends)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise InputError(
            run, f"is being trained by {holder}: wait for it to end, or stop it (a Snakemake killed before it ended)"
        ) from None
    except OSError as error:  # a file system without locks (Lustre mounted without flock: ENOSYS) trains unlocked
        handle.close()
        print(f"{run}: not locked ({error.strerror}): nothing keeps a second trainer off this run", flush=True)
        return
    handle.seek(0)
    handle.truncate()
    handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
    handle.flush()
    _held_locks[key] = handle


def finished_at(checkpoint: str | None, max_steps: int) -> bool:
    """Whether `checkpoint` holds the end of the run: Trainer would train one step past it (`steps: 41` of 40)."""
    if checkpoint is None:
        return False
    return json.loads((Path(checkpoint) / "trainer_state.json").read_text())["global_step"] >= max_steps
