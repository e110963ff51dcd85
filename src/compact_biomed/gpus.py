"""A GPU of its own for each GPU job of a local run on a workstation with several.

Snakemake counts a local job's `gpu` and `gpu_slots` against the run's `--resources` but gives it no device, so
every job would see all GPUs and use the first. With `--resources gpu=N gpu_slots=S` (N > 1), each GPU job claims
its devices here before CUDA starts and sees only those (CUDA_VISIBLE_DEVICES): a job holding `gpu` GPUs takes
all S/N slots of that many GPUs, a NER fine-tuning one slot of one GPU. Fine-tunings spread over the GPUs, onto the
emptiest; while a whole-GPU job waits, onto the fullest with room, so that a GPU comes free for it. A claim is a
lock on a file, held by the job's process (and children it forks): it goes when they end or die.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .config import ConfigError

ENV = "COMPACT_BIOMED_GPUS"  # "<GPUs> <slots per GPU> <lock folder>", set by the Snakefile for several GPUs
_held: list[int] = []  # the claim's lock files, open until the process ends
WANTED = "whole-wanted.lock"  # held shared by each whole-GPU job while it waits


def lock_dir() -> Path:
    """Chosen once by the run (a job's TMPDIR may differ) and shared by this user's runs on this machine."""
    return Path(tempfile.gettempdir()) / f"compact-biomed-gpus-{os.getuid()}"


def devices(count: int) -> list[str]:
    """The first `count` devices this run may use: those CUDA_VISIBLE_DEVICES lists where it is set, else
    0 .. count-1."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        listed = [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()]
        return list(itertools.takewhile(lambda d: not d.startswith("-"), listed))[:count]  # CUDA stops at a -1
    return [str(i) for i in range(count)]


def present() -> int | None:
    """How many GPUs this machine shows the run: those CUDA_VISIBLE_DEVICES lists, else `nvidia-smi -L`'s; None
    where it cannot tell."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return len(devices(1 << 16))
    if not shutil.which("nvidia-smi"):
        return None
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, check=False)
    return sum(line.startswith("GPU ") for line in listed.stdout.splitlines()) if listed.returncode == 0 else None


def settings_problem(gpus: int, slots: int) -> str | None:
    """Why `--resources gpu=<gpus> gpu_slots=<slots>` cannot be claimed on this machine, or None."""
    if slots % gpus:
        return f"--resources gpu={gpus} gpu_slots={slots}: give every GPU as many slots (8 each: gpu_slots={8 * gpus})"
    shown = present()
    if shown is not None and shown < gpus:
        return f"--resources gpu={gpus}: this machine shows {shown} GPU(s) (nvidia-smi -L, or CUDA_VISIBLE_DEVICES)"
    return None


def claim_for_job(gpu: int, gpu_slots: int, poll_seconds: float = 2.0) -> str | None:
    """Claim the job's devices when the run has several GPUs (ENV), and show the job only those; returns the
    CUDA_VISIBLE_DEVICES value set, or None where there is nothing to choose (one GPU, a cluster job)."""
    if ENV not in os.environ or not (gpu or gpu_slots):
        return None
    count, slots, folder = os.environ[ENV].split(" ", 2)
    count, slots = int(count), int(slots)
    if gpu and gpu_slots != gpu * slots:  # Snakemake would count other slots than the job locks
        raise ConfigError(f"a job holding gpu={gpu} needs gpu_slots={gpu * slots} (--set-resources <rule>:gpu_slots=)")
    chosen = claim(devices(count), slots, gpu, gpu_slots if not gpu else 0, Path(folder), poll_seconds)
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    return os.environ["CUDA_VISIBLE_DEVICES"]


def claim(gpus: list[str], slots: int, whole: int, shared: int, folder: Path, poll_seconds: float = 2.0) -> list[str]:
    """Wait until this process holds `whole` GPUs (every slot of each) or `shared` slots of one GPU; the devices.
    Within Snakemake's totals a whole-GPU job waits at most until the fine-tunings on one GPU end."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    wanted = None
    try:
        while True:
            with one_claimer(folder):  # a look at the free slots and the locking of some, one job at a time
                chosen = try_whole(gpus, slots, whole, folder) if whole else try_shared(gpus, slots, shared, folder)
            if chosen:
                return chosen
            if whole and wanted is None:  # fine-tunings now fill the fullest GPUs, leaving one to come free
                wanted = os.open(folder / WANTED, os.O_RDWR | os.O_CREAT, 0o600)
                fcntl.flock(wanted, fcntl.LOCK_SH)
                print(f"waiting for {whole} whole GPU(s)", flush=True)
            time.sleep(poll_seconds)
    finally:
        if wanted is not None:
            os.close(wanted)


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
        if len(chosen) == count:
            break
        handles = lock_slots(folder, device, range(slots))
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
    free = {device: [k for k in range(slots) if unlocked(slot_file(folder, device, k))] for device in gpus}
    fullest_first = not unlocked(folder / WANTED)  # a whole-GPU job waits
    roomy = [d for d in gpus if len(free[d]) >= count]
    for device in sorted(roomy, key=lambda d: len(free[d]) if fullest_first else -len(free[d])):
        handles = lock_slots(folder, device, free[device][:count])
        if handles:
            _held.extend(handles)
            return [device]
    return None


def slot_file(folder: Path, device: str, slot: int) -> Path:
    return folder / f"gpu{device.replace('/', '_')}-slot{slot}.lock"  # a MIG device's name holds slashes


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


def unlocked(path: Path) -> bool:
    """Whether no process holds a lock on `path` (a look: the lock taken to see is let go at once)."""
    handle = try_lock(path)
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
