"""How long a pre-training job asks the cluster for: the measured speed of each model on one GPU, with margin.

Speeds are optimizer steps per second at the paper's shapes (global batch 192, sequences of at most 256, bf16,
micro-batch "auto"), measured with the pipeline's own training step (benchmarks/bench_pretrain.py); the README's
cost table shows them (its H100 eager column).
"""

from __future__ import annotations

import math

from ..config import train_settings

# Eager, padded rates: config/paper.yaml compiles or packs every model's step (1.29-2.02x the eager step of the same
# run on an H200, the README's cost table), so the requests hold with those settings off too.
# One NVIDIA H100 80GB, 2026-11-26 (benchmarks/results/h100-pretrain.txt), timed with a wait for the GPU at each step;
# an H200 without it ran the eager steps 1.06-1.27x as fast (h200-pretrain-compiled.txt, -distil.txt, -biotinybert-*).
STEPS_PER_SECOND = {
    "DistilBioBERT": 8.72,
    "CompactBioBERT": 4.38,
    "TinyBioBERT": 7.06,
    "BioDistilBERT": 15.6,
    "BioTinyBERT": 17.5,
    "BioMobileBERT": 5.33,
}
MARGIN = 2.0  # a slower GPU, a busy file system, checkpoints; a job that still runs out resumes on its retry
STARTUP_MINUTES = 30  # loading the shards and models, choosing the micro-batch


def pretrain_runtime_minutes(config: dict, model: str) -> int:
    """The SLURM time limit of `model`'s pre-training job: its steps at the measured speed (the slowest measured
    model's for a model not measured), with margin. The same for a retry: it resumes from its newest checkpoint
    and needs only the rest (growing, BioMobileBERT's 21 h would ask 43 h, past most GPU partitions' limit)."""
    rate = STEPS_PER_SECOND.get(model, min(STEPS_PER_SECOND.values()))
    steps = train_settings(config, model)["max_steps"]
    return math.ceil(STARTUP_MINUTES + MARGIN * steps / rate / 60)
