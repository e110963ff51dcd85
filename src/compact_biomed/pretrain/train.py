"""How a compact model is trained: the Hugging Face Trainer, and the loop around it (`train_and_export`).

`train_and_export(settings)` is what `compact_biomed.pretrain.run` runs in each process. Everything the library
already does well (bf16, torchrun multi-GPU, gradient accumulation, optimizer, schedule, clipping, checkpoint files)
is left to `Trainer`; the recipes add, each in its own module:
- `data`: the shards, and a collator whose MLM masks depend on (seed, example indices) only, so a resumed run sees
  the masks of an uninterrupted one;
- `checkpoints`: one folder per run's inputs, resumed from its newest complete checkpoint;
- `micro_batch`: the largest per-device batch that fits, the global batch kept by accumulation;
- `card`: the exported student, its model card and train_log.jsonl.
Here: checkpoints holding the student (+ fit_dense) but never the frozen teacher, and per-term losses in the log.
"""

from __future__ import annotations

import dataclasses
import math
import os
from contextlib import contextmanager
from pathlib import Path

import safetensors.torch
import torch
from transformers import AutoTokenizer, Trainer, TrainerCallback, TrainerState, TrainingArguments, set_seed

from .. import one_gpu
from ..config import ConfigError
from ..io import InputError, write_text
from . import Diverged, Settings, TrainSettings, recipes
from .card import export, log_rows, model_card
from .checkpoints import (
    DIVERGED_FILE,
    check_not_diverged,
    finished_at,
    latest_complete_checkpoint,
    lock_run,
    open_run_dir,
    remove_incomplete_checkpoints,
    run_dir,
    run_fingerprint,
)
from .data import (
    PACKED_ROW_MULTIPLE,
    IndexedExamples,
    ReproducibleMaskingCollator,
    load_shards,
    longest_sequence,
    mark_selections_dynamic,
)
from .micro_batch import (
    check_batch_sizes,
    choose_micro_batch,
    gradient_accumulation_steps,
    precision_flags,
    process_count,
)

FIT_DENSE_FILE = "fit_dense.safetensors"


# ---------------------------------------------------------------------------------------------------------------
# Trainer: per-term logging, student-only checkpoints
# ---------------------------------------------------------------------------------------------------------------


class PretrainTrainer(Trainer):
    # the objective returns per-micro-batch means, so Trainer divides by the accumulation steps as usual
    loss_is_scaled_for_ga = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._term_names: list[str] | None = None
        self._term_sums: torch.Tensor | None = None  # on device: no host sync per step
        self._term_steps = 0.0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mark_selections_dynamic(inputs)
        outputs = model(**inputs)
        if model.training:
            self._accumulate_terms(outputs["terms"])
        return (outputs["loss"], outputs) if return_outputs else outputs["loss"]

    def _accumulate_terms(self, terms: dict[str, torch.Tensor]) -> None:
        accumulation = self.current_gradient_accumulation_steps
        values = torch.stack([value.detach().float() for value in terms.values()]) / accumulation
        if self._term_sums is None:
            self._term_names, self._term_sums = list(terms), torch.zeros_like(values)
        self._term_sums += values
        self._term_steps += 1.0 / accumulation

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs and self._term_sums is not None and self._term_steps > 0:
            means = self.accelerator.reduce(self._term_sums, reduction="mean") / self._term_steps
            logs.update({f"loss_{name}": value for name, value in zip(self._term_names, means.tolist())})
            self._term_sums.zero_()
            self._term_steps = 0.0
        super().log(logs, start_time)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """A checkpoint is a loadable HF directory of the student (+ fit_dense); the frozen teacher is not saved."""
        if not self.args.should_save:
            return
        output_dir = output_dir or self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        objective = self.accelerator.unwrap_model(self.model)
        objective.student.save_pretrained(output_dir)
        if objective.fit_dense is not None:
            safetensors.torch.save_file(objective.fit_dense.state_dict(), os.path.join(output_dir, FIT_DENSE_FILE))
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        objective = self.accelerator.unwrap_model(model or self.model)
        saved = type(objective.student).from_pretrained(resume_from_checkpoint)
        objective.student.load_state_dict(saved.state_dict())
        if objective.fit_dense is not None:
            objective.fit_dense.load_state_dict(
                safetensors.torch.load_file(os.path.join(resume_from_checkpoint, FIT_DENSE_FILE))
            )


class StopIfDiverged(TrainerCallback):
    """Ends the run at the first logged loss that is not finite (its window's mean: one NaN step makes it NaN):
    the weights are NaN or soon will be, and every later step would spend GPU time on them. It also logs at every
    step that saves a checkpoint and at the last step, and the Trainer logs before it saves: no checkpoint and no
    export holds a step the check has not seen."""

    def __init__(self, model_name: str):
        self.model_name = model_name

    def on_step_end(self, args, state, control, **kwargs):
        if control.should_save or state.global_step >= state.max_steps:
            control.should_log = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(loss):
            message = (
                f"models.{self.model_name}: the loss logged at step {state.global_step} is {loss}: training diverged;"
                f" the checkpoints before it stay in {args.output_dir}, and a lower learning_rate or more"
                " warmup_steps starts a new run"
            )
            # every process writes it (atomically, the same line): torchrun may stop the others once one has raised
            try:
                write_text(Path(args.output_dir) / DIVERGED_FILE, message + "\n")
            except (OSError, InputError) as error:
                print(f"could not record the divergence for retries: {error}", flush=True)
            raise Diverged(message)


# ---------------------------------------------------------------------------------------------------------------
# Training arguments
# ---------------------------------------------------------------------------------------------------------------


def training_arguments(train: TrainSettings, checkpoint_dir: str, seed: int) -> TrainingArguments:
    accumulation = gradient_accumulation_steps(train.global_batch_size, train.per_device_batch_size, process_count())
    save_steps = train.save_steps or 0  # 0 / None: no intermediate checkpoint, hence no resume
    checkpointing = {"save_strategy": "steps", "save_steps": save_steps} if save_steps else {"save_strategy": "no"}
    precision = precision_flags(train.precision)
    pinned = torch.cuda.is_available()
    args = TrainingArguments(
        output_dir=checkpoint_dir,
        max_steps=train.max_steps,
        per_device_train_batch_size=train.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_steps,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        logging_strategy="steps",
        logging_steps=train.logging_steps,
        # on, the Trainer reads every micro-batch's loss back to test it for NaN: a host sync that idles the GPU,
        # for a log that then hides the NaN (the weights take its step either way). Off, a diverged run logs NaN and
        # stops (StopIfDiverged). fp16 keeps it: its GradScaler skips an overflowing step (and syncs anyway)
        logging_nan_inf_filter=precision["fp16"],
        save_total_limit=train.save_total_limit,
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=train.dataloader_workers,
        dataloader_pin_memory=pinned,
        # batches copied to the GPU from pinned memory without the host waiting for the copy (and so for the step)
        accelerator_config={"non_blocking": pinned},
        # one kernel for all parameters (transformers' default on torch >= 2.8). No TF32: under bf16 autocast no
        # matrix product is left in fp32, and a run set to fp32 asked for fp32
        optim="adamw_torch_fused",
        remove_unused_columns=False,  # the collator gets input_ids + special_tokens_mask (spec §2 pitfall)
        ddp_find_unused_parameters=False,  # every student parameter is used at every step
        report_to="none",
        disable_tqdm=True,
        **checkpointing,
        **precision,
    )
    return one_gpu(args)


def compile_objective(objective: torch.nn.Module) -> None:
    """torch.compile the objective's forward (and so its backward) in place: the module, its state_dict and the
    checkpoints stay as they are. Not TrainingArguments(torch_compile=True): that also turns TF32 on under bf16
    (transformers' training_args), against the no-TF32 choice in training_arguments.

    Shapes vary by batch (sequence length, masked positions): torch.compile's automatic dynamic shapes
    (dynamic=None) compile the first batch static and, at the first batch of other sizes, once more with those
    sizes symbolic. No length buckets (padding each batch on to a multiple of 64): TinyBioBERT's att and rep
    terms and CompactBioBERT's attention KL average over padding too (spec §1.3, §1.4), so their loss would change.
    The MLM heads and the losses select masked rows / real tokens by the collator's indices (`selections`), whose
    sizes are inputs' sizes, symbolic from the first compilation (mark_selections_dynamic): DistilBioBERT's objective
    is one graph. Selected by boolean masks, as a batch without the indices still is, the sizes come from the data:
    traced too (below), else each such index breaks the graph (DistilBioBERT: 15 graphs, 2.9x the time to compile
    on a CPU); even so the losses' checks for an empty selection (`if rows == 0`) split it at each loss.
    """
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    install_output_hooks(objective)
    objective.compile()


def install_output_hooks(objective: recipes.PretrainingObjective) -> None:
    """transformers installs the hooks that capture hidden states and attention maps at the first forward that asks
    for them, under a lock torch.compile cannot trace. A step compiled before any eager one (a hand-set micro-batch,
    or `auto` off CUDA) broke into graphs at each model (CompactBioBERT: 14 breaks, 7 graphs); one compiled after the
    eager micro-batch probe (`auto` on CUDA) was one graph. With the hooks installed here, the step is one graph
    either way (a transformers without this function installs nothing here: the breaks come back)."""
    from transformers.utils import output_capturing

    install = getattr(output_capturing, "maybe_install_capturing_hooks", None)
    if install is None or not (recipes.needs_hidden_states(objective.recipe) or objective.recipe.attention_maps):
        return
    for model in (objective.student, objective.teacher):
        if model is not None:
            install(model.base_model)


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------


@contextmanager
def config_key(key: str):
    """A problem of a config value found while the run is built: one ConfigError naming the key."""
    try:
        yield
    except ConfigError as error:
        raise ConfigError(f"invalid config value at '{key}': {error}") from None


def build_objective(settings: Settings, recipe: recipes.Recipe):
    """The objective module and the tokenizer of its vocabulary. Seeds first: fresh weights are random."""
    row = f"models.{settings.model_name}"
    set_seed(settings.seed)
    if recipe.kind == "distillation":
        if not settings.teacher_dir:
            raise ConfigError(
                f"invalid config value at '{row}.recipe': recipe {recipe.name!r} distils a teacher, "
                f"but no teacher folder was given"
            )
        teacher = recipes.load_teacher(settings.teacher_dir, recipe)
        with config_key(f"{row}.student"):
            model = recipes.build_student(recipe, teacher, settings.student)
            objective = recipes.PretrainingObjective(recipe, model, teacher, settings.train.teacher_dropout)
        return objective, AutoTokenizer.from_pretrained(settings.teacher_dir)
    if not settings.start_dir:
        raise ConfigError(
            f"invalid config value at '{row}.recipe': recipe {recipe.name!r} continues a start model, "
            f"but no start model folder was given"
        )
    if settings.student:
        raise ConfigError(
            f"invalid config value at '{row}.student': recipe {recipe.name!r} trains the start "
            f"model as is; student overrides {settings.student} do not apply"
        )
    model = recipes.load_start_model(settings.start_dir, recipe)
    return recipes.PretrainingObjective(recipe, model), AutoTokenizer.from_pretrained(settings.start_dir)


def use_packing(train: TrainSettings, objective: recipes.PretrainingObjective) -> bool:
    """The train setting `packing` where the recipe and the models allow it (recipes.packs_rows); a line where not."""
    allowed = recipes.packs_rows(objective.recipe, objective.model_types())
    if train.packing and not allowed:
        where = f"recipe {objective.recipe.name} on {'/'.join(objective.model_types())}"
        print(f"packing: off for {where} (see recipes.packs_rows)", flush=True)
    return train.packing and allowed


def masking_collator(
    tokenizer, train: TrainSettings, objective: recipes.PretrainingObjective, seed: int, device: torch.device
) -> ReproducibleMaskingCollator:
    """The collator for `train` on the Trainer's `device` (TrainingArguments.device; the model may still be on the
    CPU when it is built): packed rows where allowed, their count rounded up on CUDA (PACKED_ROW_MULTIPLE)."""
    return ReproducibleMaskingCollator(
        tokenizer,
        train.mlm_probability,
        seed,
        packing=use_packing(train, objective),
        row_multiple=PACKED_ROW_MULTIPLE if device.type == "cuda" else 1,
    )


def train_and_export(settings: Settings) -> dict:
    """Pre-train one compact model in this process (alone, or as one torchrun worker) and export it to
    `settings.out_dir`; returns a summary.

    Distillation recipes (distilbiobert, compactbiobert, tinybiobert) need `teacher_dir`, `continual_mlm` needs
    `start_dir`; `student` overrides a distillation student's architecture. Checkpoints go to
    `checkpoint_dir/run-<key>/`, the key hashing the inputs' content and the settings; the run resumes from the
    newest complete one found there.
    """
    row = f"models.{settings.model_name}"
    with config_key(f"{row}.recipe"):
        spec = recipes.get_recipe(settings.recipe)
    with config_key(f"{row}.train"):
        check_batch_sizes(settings.train)  # before anything loads
        precision_flags(settings.train.precision)
    rows = load_shards(settings.shard_dirs)
    fingerprint = run_fingerprint(settings)
    run = run_dir(settings.checkpoint_dir, fingerprint)  # the run's folder, named by its inputs' content
    check_not_diverged(run)
    objective, tokenizer = build_objective(settings, spec)
    if len(tokenizer) > objective.student.config.vocab_size:
        raise InputError(
            settings.teacher_dir or settings.start_dir,
            f"tokenizer has {len(tokenizer)} tokens but the model only {objective.student.config.vocab_size}",
        )
    micro_batch = choose_micro_batch(settings.train, objective, longest_sequence(rows), len(tokenizer))
    origin = "the largest that fits the device" if settings.train.per_device_batch_size == "auto" else "set by hand"
    train = dataclasses.replace(settings.train, per_device_batch_size=micro_batch)
    args = training_arguments(train, settings.checkpoint_dir, settings.seed)
    print(
        f"per-device batch {micro_batch} x {args.gradient_accumulation_steps} accumulation step(s) x "
        f"{args.world_size} process(es) = global batch {train.global_batch_size}",
        flush=True,
    )

    args.output_dir = str(run)
    if args.should_save:
        open_run_dir(settings.checkpoint_dir, fingerprint)
        lock_run(run)  # before anything in it is removed: another trainer may be saving there
        remove_incomplete_checkpoints(args.output_dir)
    resume_from = latest_complete_checkpoint(args.output_dir)

    if train.compile:
        compile_objective(objective)  # after the micro-batch probe, which runs eagerly
    trainer = PretrainTrainer(
        model=objective,
        args=args,
        train_dataset=IndexedExamples(rows),
        processing_class=tokenizer,
        data_collator=masking_collator(tokenizer, train, objective, settings.seed, args.device),
        callbacks=[StopIfDiverged(settings.model_name)],
    )
    if finished_at(resume_from, train.max_steps):
        print(f"{resume_from} is the finished run's last checkpoint: exporting it, no further training", flush=True)
        trainer._load_from_checkpoint(resume_from)
        trainer.state = TrainerState.load_from_json(os.path.join(resume_from, "trainer_state.json"))
    else:
        print(
            f"resuming from {resume_from}" if resume_from else "no complete checkpoint: starting at step 0", flush=True
        )
        trainer.train(resume_from_checkpoint=resume_from)

    history = log_rows(trainer.state.log_history, list(spec.loss_weights))
    final = {k: v for k, v in (history[-1] if history else {}).items() if k == "loss" or k.startswith("loss_")}
    summary = {
        "recipe": settings.recipe,
        "model_name": settings.model_name,
        "steps": trainer.state.global_step,
        "global_batch_size": train.global_batch_size,
        "per_device_batch_size": micro_batch,
        "gradient_accumulation_steps": args.gradient_accumulation_steps,
        "world_size": args.world_size,
        "final_losses": final,
        "parameters": objective.student.num_parameters(),
        "resumed_from": resume_from,
        "out_dir": settings.out_dir,
    }
    if trainer.is_world_process_zero():
        card = model_card(
            spec,
            settings,
            train,
            trainer.state.global_step,
            summary["parameters"],
            final,
            objective.student.config,
            origin,
        )
        export(objective, tokenizer, settings.out_dir, card, history)
    trainer.accelerator.wait_for_everyone()
    return summary
