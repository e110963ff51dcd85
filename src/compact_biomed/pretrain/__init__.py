"""Pre-training one compact model (rules/pretrain.smk): `Settings.from_config(...)` once, then `run(settings)`.

The adapter, the CLI and each torchrun worker call `run`. The modules behind it: `recipes` (what is trained: the
four recipes, students, objective), `losses`, `train` (how: the Trainer and its loop), `data` (shards, masking
collator), `checkpoints` (resumable runs), `micro_batch`, `card` (the export), `launch` (torchrun over the job's
GPUs), `cost` (a job's cluster time limit). Only light modules are imported here:
Snakemake imports `cost` while it parses the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from ..config import ConfigError, train_settings


class Diverged(RuntimeError):
    """A run's logged loss is not finite: it stops there (train.StopIfDiverged), in one line naming the model."""


class WorkerError(RuntimeError):
    """A torchrun worker's one-line error (bad input, a diverged run), raised again by the process that launched it."""


@dataclass(frozen=True)
class TrainSettings:
    """A model's training hyper-parameters (config/schema.yaml's `train`, whose `train_defaults` hold the defaults:
    train_defaults overridden by the row's own `train` block)."""

    max_steps: int
    global_batch_size: int
    per_device_batch_size: int | str  # an integer, or "auto": the largest that fits the device (micro_batch.py)
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    lr_scheduler: str
    mlm_probability: float
    save_steps: int  # 0: no intermediate checkpoint, hence no resume (tests; the schema asks for at least 1)
    save_total_limit: int
    logging_steps: int
    teacher_dropout: bool
    max_grad_norm: float
    precision: str
    dataloader_workers: int
    compile: bool  # torch.compile the training step (train.compile_objective); the same losses but dropout
    packing: bool  # citations several to a row, each attending to itself (data.pack_rows); same losses but dropout

    @classmethod
    def from_dict(cls, values: dict, key: str) -> TrainSettings:
        """The settings of a merged `train` block; `key` names it in the error of a block the schema did not check."""
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(values) - names), sorted(names - set(values))
        if unknown:
            raise ConfigError(f"invalid config value at '{key}': unknown train setting(s) {', '.join(unknown)}")
        if missing:
            raise ConfigError(
                f"invalid config value at '{key}': no value for {', '.join(missing)} (a config "
                f"checked against config/schema.yaml has the defaults filled in)"
            )
        return cls(**values)


@dataclass(frozen=True)
class Settings:
    """Everything one pre-training run depends on, read once from the checked config and the job's paths."""

    model_name: str  # the row of config `models`; error messages name its keys
    recipe: str
    shard_dirs: tuple[str, ...]  # tokenised shards, in order
    out_dir: str  # the exported student
    checkpoint_dir: str  # Trainer checkpoints, one run-<key> folder per run's inputs (checkpoints.run_dir)
    teacher_dir: str | None  # distillation recipes
    start_dir: str | None  # continual_mlm
    student: dict | None  # architecture overrides of a distillation student
    seed: int
    train: TrainSettings

    @classmethod
    def from_config(
        cls,
        config: dict,
        model_name: str,
        shard_dirs,
        out_dir: str | Path,
        checkpoint_dir: str | Path,
        teacher_dir: str | Path | None = None,
        start_dir: str | Path | None = None,
    ) -> Settings:
        """The settings of row `model_name` of a config checked with the schema's defaults filled in."""
        row = config["models"].get(model_name)
        if row is None or "recipe" not in row:
            raise ConfigError(f"invalid config value at 'models': no row {model_name!r} with a recipe to train")
        return cls(
            model_name=model_name,
            recipe=row["recipe"],
            shard_dirs=tuple(str(d) for d in shard_dirs),
            out_dir=str(out_dir),
            checkpoint_dir=str(checkpoint_dir),
            teacher_dir=str(teacher_dir) if teacher_dir else None,
            start_dir=str(start_dir) if start_dir else None,
            student=row.get("student"),
            seed=row["seed"],
            train=TrainSettings.from_dict(train_settings(config, model_name), f"models.{model_name}.train"),
        )


def run(settings: Settings, gpus: int = 1) -> dict | None:
    """Pre-train one compact model and export it to `settings.out_dir`; returns the run's summary.

    With `gpus` > 1 and as many visible, torchrun runs one process per GPU, each calling `run(settings)`; the
    Trainer splits each step over them (the summary is then in the log only, and None is returned)."""
    from . import launch

    processes = min(gpus, launch.visible_gpus()) if gpus > 1 else 1
    if processes > 1:
        launch.torchrun(settings, processes)
        return None
    from .train import train_and_export

    return train_and_export(settings)
