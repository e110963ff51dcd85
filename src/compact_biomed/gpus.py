"""A GPU of its own for each GPU job of a local run on a workstation with several.

Snakemake counts a local job's `gpu` and `gpu_slots` against the run's `--resources` but gives it no device, so
every job would see all GPUs and use the first. With `--resources gpu=N gpu_slots=S` (N > 1), each GPU job claims
its devices here before CUDA starts and sees only those (CUDA_VISIBLE_DEVICES): a job holding `gpu` GPUs takes
all S/N slots of that many GPUs, a NER fine-tuning one slot of the fullest GPU with room, so that whole GPUs come
free for pre-training. A claim is a lock on a file, held by the job's process: it goes when the job ends or dies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
import time
from pathlib import Path

ENV = "COMPACT_BIOMED_GPUS"  # "<GPUs> <slots per GPU>", set by the Snakefile for a local run on several GPUs
_held: list[int] = []  # the claim's lock files, open until the process ends


def lock_dir() -> Path:
    """Shared by every run of this user on this machine, so that two runs do not take the same slots."""
    return Path(tempfile.gettempdir()) / f"compact-biomed-gpus-{os.getuid()}"


def devices(count: int) -> list[str]:
    """The first `count` devices this run may use: those CUDA_VISIBLE_DEVICES lists, else 0 .. count-1."""
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


def claim_for_job(gpu: int, gpu_slots: int, poll_seconds: float = 2.0) -> str | None:
    """Claim the job's devices when the run has several GPUs (ENV), and show the job only those; returns the
    CUDA_VISIBLE_DEVICES value set, or None where there is nothing to choose (one GPU, a cluster job)."""
    if ENV not in os.environ or not (gpu or gpu_slots):
        return None
    count, slots = (int(value) for value in os.environ[ENV].split())
    chosen = claim(devices(count), slots, gpu, gpu_slots if not gpu else 0, lock_dir(), poll_seconds)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    return os.environ["CUDA_VISIBLE_DEVICES"]


def claim(gpus: list[str], slots: int, whole: int, shared: int, folder: Path, poll_seconds: float = 2.0) -> list[str]:
    """Wait until this process holds `whole` GPUs (every slot of each) or `shared` slots of one GPU; the devices.
    Snakemake keeps the run's jobs within its totals, so a wait lasts only until a fragment frees (minutes)."""
    folder.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        with one_claimer(folder):  # a look at the free slots and the locking of some, one job at a time
            chosen = try_whole(gpus, slots, whole, folder) if whole else try_shared(gpus, slots, shared, folder)
        if chosen:
            return chosen
        if not waited:
            print(f"waiting for {f'{whole} whole GPU(s)' if whole else f'{shared} slot(s) of a GPU'}", flush=True)
            waited = True
        time.sleep(poll_seconds)


@contextlib.contextmanager
def one_claimer(folder: Path):
    handle = os.open(folder / "claim.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)


def try_whole(gpus: list[str], slots: int, count: int, folder: Path) -> list[str] | None:
    chosen, taken = [], []
    for device in gpus:
        handles = lock_slots(folder, device, range(slots)) if len(chosen) < count else None
        if handles:
            chosen.append(device)
            taken += handles
    if len(chosen) < count:  # all or nothing: GPUs held while waiting for more could starve another job
        for handle in taken:
            os.close(handle)
        return None
    _held.extend(taken)
    return chosen


def try_shared(gpus: list[str], slots: int, count: int, folder: Path) -> list[str] | None:
    free = {device: [k for k in range(slots) if slot_free(folder, device, k)] for device in gpus}
    for device in sorted((d for d in gpus if len(free[d]) >= count), key=lambda d: len(free[d])):  # fullest first
        handles = lock_slots(folder, device, free[device][:count])
        if handles:
            _held.extend(handles)
            return [device]
    return None


def slot_file(folder: Path, device: str, slot: int) -> Path:
    return folder / f"gpu{device}-slot{slot}.lock"


def lock_slots(folder: Path, device: str, slots) -> list[int] | None:
    """Locks on every one of `slots` of `device`, or None (those taken so far are let go)."""
    taken = []
    for slot in slots:
        handle = try_lock(slot_file(folder, device, slot))
        if handle is None:
            for held in taken:
                os.close(held)
            return None
        taken.append(handle)
    return taken


def slot_free(folder: Path, device: str, slot: int) -> bool:
    handle = try_lock(slot_file(folder, device, slot))
    if handle is not None:
        os.close(handle)
    return handle is not None


def try_lock(path: Path) -> int | None:
    handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle)
        return None
    return handle


def release() -> None:
    """Let go of this process's claim (it also goes when the process ends)."""
    while _held:
        os.close(_held.pop())
