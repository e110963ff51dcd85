"""The micro-batch: the largest divisor of each process's share of the global batch that fits the device (or set by
hand), the global batch kept by gradient accumulation on any number of processes; and the precision the device
takes."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..config import ConfigError
from . import TrainSettings


def gradient_accumulation_steps(global_batch_size: int, per_device_batch_size: int, world_size: int) -> int:
    per_step = per_device_batch_size * world_size
    if global_batch_size % per_step:
        raise ConfigError(
            f"global_batch_size {global_batch_size} is not a multiple of per_device_batch_size "
            f"{per_device_batch_size} x {world_size} process(es)"
        )
    return global_batch_size // per_step


def precision_flags(precision: str) -> dict:
    """ "auto" = bf16 on a CUDA device that supports it, else fp32 (the official scripts trained in fp32, spec §3).
    bf16 or fp16 set by hand where the device has no such arithmetic is a ConfigError (Trainer's is a traceback)."""
    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if precision == "auto":
        precision = "bf16" if bf16 else "fp32"
    if precision not in ("bf16", "fp16", "fp32"):
        raise ValueError(f"unknown precision {precision!r}; use auto, bf16, fp16 or fp32")
    if (precision == "bf16" and not bf16) or (precision == "fp16" and not torch.cuda.is_available()):
        raise ConfigError(
            f"precision {precision} needs a CUDA GPU with {precision} arithmetic, and this machine has none "
            "(auto: bf16 where there is one, else fp32)"
        )
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


MEMORY_HEADROOM = 0.9  # share of the device's memory a step may take: the allocator fragments the rest
# The probe runs eagerly, and a compiled step can hold more: CompactBioBERT's held 48.7 GiB against 39.9 eager on an
# H100 (1.22x; benchmarks/results/h100-pretrain-compiled-four.txt); the three others there, and DistilBioBERT
# (h100-pretrain-distil-compile.txt), held less than eager (BioTinyBERT's compiled step: not measured). Since
# CompactBioBERT's step is one graph (d92ce44), it held 23.1 GiB against 40.1 on an H200 (h200-pretrain-compiled.txt):
# one run, so the factor stays.
COMPILED_MEMORY_FACTOR = 1.25


def micro_batch_candidates(global_batch_size: int, world_size: int) -> list[int]:
    """Every per-device batch that keeps the global batch exact by accumulation, smallest first."""
    if global_batch_size % world_size:
        raise ConfigError(f"global_batch_size {global_batch_size} is not a multiple of {world_size} process(es)")
    share = global_batch_size // world_size
    return [n for n in range(1, share + 1) if share % n == 0]


def largest_fitting(candidates: list[int], fits: Callable[[int], bool]) -> int:
    """The largest candidate that fits; `fits` is monotone. The largest is tried first (what a large GPU takes),
    then a binary search, so a probe costs one step, or a few on a small GPU."""
    if fits(candidates[-1]):
        return candidates[-1]
    low, high, best = 0, len(candidates) - 2, None
    while low <= high:
        middle = (low + high) // 2
        if fits(candidates[middle]):
            best, low = candidates[middle], middle + 1
        else:
            high = middle - 1
    if best is None:
        raise RuntimeError(f"not even a micro-batch of {candidates[0]} fits the device's memory")
    return best


@dataclass(frozen=True)
class ProbeBatch:
    """The worst batch the data can produce: every sequence as long as the longest in the shards."""

    max_length: int
    vocab_size: int
    mlm_probability: float
    autocast_dtype: torch.dtype | None  # the Trainer's mixed precision, None in fp32

    def tensors(self, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)  # its own generator: the global RNG stays untouched
        shape = (batch_size, self.max_length)
        input_ids = torch.randint(0, self.vocab_size, shape, generator=generator)
        masked = torch.rand(shape, generator=generator) < self.mlm_probability
        labels = torch.where(masked, input_ids, torch.full_like(input_ids, -100))
        return {
            "input_ids": input_ids.to(device),
            "attention_mask": torch.ones_like(input_ids).to(device),
            "labels": labels.to(device),
        }


def probe_step(objective: torch.nn.Module, batch_size: int, probe: ProbeBatch) -> None:
    """One forward + backward of the worst batch, leaving no trace: RNG states forked, gradients dropped."""
    device = next(objective.parameters()).device
    was_training = objective.training
    objective.train()  # dropout masks are part of a training step's memory
    try:
        with (
            torch.random.fork_rng(devices=[device] if device.type == "cuda" else []),
            torch.autocast(device.type, dtype=probe.autocast_dtype, enabled=probe.autocast_dtype is not None),
        ):
            objective(**probe.tensors(batch_size, device))["loss"].backward()
    finally:
        objective.zero_grad(set_to_none=True)
        objective.train(was_training)


def optimizer_state_bytes(objective: torch.nn.Module) -> int:
    """AdamW's two fp32 moments per trainable parameter, allocated after the probe by the first step."""
    return 2 * 4 * sum(p.numel() for p in objective.parameters() if p.requires_grad)


def step_fits(probe_peak: int, optimizer_bytes: int, budget: float, compiled: bool) -> bool:
    """Whether a step whose eager probe peaked at `probe_peak` bytes, plus the optimizer's state, fits `budget`;
    a compiled step with COMPILED_MEMORY_FACTOR's margin."""
    return probe_peak * (COMPILED_MEMORY_FACTOR if compiled else 1.0) + optimizer_bytes <= budget


def fits_device_memory(objective: torch.nn.Module, batch_size: int, probe: ProbeBatch, compiled: bool = False) -> bool:
    """Whether a training step of `batch_size` worst-case sequences fits the CUDA device's memory (measured, not
    estimated; `compiled`: the step will be torch.compile's). Off CUDA there is nothing to probe: host memory is not
    the limit of a device, so all fits."""
    device = next(objective.parameters()).device
    if device.type != "cuda":
        return True
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    budget = MEMORY_HEADROOM * (torch.cuda.mem_get_info(device)[0] + torch.cuda.memory_reserved(device))
    try:
        probe_step(objective, batch_size, probe)
    except torch.cuda.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()
    return step_fits(torch.cuda.max_memory_allocated(device), optimizer_state_bytes(objective), budget, compiled)


def autocast_dtype(precision: dict) -> torch.dtype | None:
    return torch.bfloat16 if precision["bf16"] else torch.float16 if precision["fp16"] else None


def check_batch_sizes(train: TrainSettings) -> None:
    """The global batch splits over the processes, and into the hand-set micro-batches (else a ConfigError)."""
    if train.per_device_batch_size == "auto":
        micro_batch_candidates(train.global_batch_size, process_count())
    else:
        gradient_accumulation_steps(train.global_batch_size, train.per_device_batch_size, process_count())


def choose_micro_batch(train: TrainSettings, objective: torch.nn.Module, max_length: int, vocab_size: int) -> int:
    """The per-device batch: as configured, or for "auto" the largest divisor of the process's share of the global
    batch whose training step fits the device (`fits_device_memory`: a measured CUDA step).
    The objective moves to the training device first, where the Trainer would put it anyway."""
    if train.per_device_batch_size != "auto":
        return train.per_device_batch_size
    candidates = micro_batch_candidates(train.global_batch_size, process_count())
    if torch.cuda.is_available():
        objective.to(torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))))
    probe = ProbeBatch(max_length, vocab_size, train.mlm_probability, autocast_dtype(precision_flags(train.precision)))
    chosen = largest_fitting(candidates, lambda n: fits_device_memory(objective, n, probe, train.compile))
    return agree_across_processes(chosen)


def process_count() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def agree_across_processes(batch_size: int) -> int:
    """Every torchrun worker takes the smallest choice (a divisor of the same share), so all accumulate alike."""
    if process_count() == 1:
        return batch_size
    from accelerate import PartialState

    state = PartialState()  # the process group TrainingArguments would start anyway
    value = torch.tensor(batch_size, device=state.device)
    torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MIN)
    return int(value.item())
