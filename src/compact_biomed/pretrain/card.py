"""The exported student: its weights and tokenizer, its model card (README.md) and its training log."""

from __future__ import annotations

import json

from huggingface_hub import ModelCard, ModelCardData

from ..base_models import hub_id, source_name
from ..io import atomic_path
from . import Settings, TrainSettings, recipes


def log_rows(log_history: list[dict], term_names: list[str]) -> list[dict]:
    """One row per logging step: step, lr, total loss, each loss term (unweighted), grad norm, epoch."""
    rows = []
    for entry in log_history:
        if "loss" not in entry:
            continue
        row = {"step": entry["step"], "lr": entry.get("learning_rate"), "loss": entry["loss"]}
        row.update({f"loss_{name}": entry[f"loss_{name}"] for name in term_names if f"loss_{name}" in entry})
        row.update({k: entry[k] for k in ("grad_norm", "epoch") if k in entry})
        rows.append(row)
    return rows


def model_card(
    recipe: recipes.Recipe,
    settings: Settings,
    train: TrainSettings,
    steps: int,
    parameters: int,
    final: dict,
    student_config,
    micro_batch_origin: str,
) -> ModelCard:
    """The exported model's README.md. Its metadata names a `base_model` only when the teacher or start model came
    from the hub: the hub rejects a local path there (random demo models, user folders)."""
    weights = recipe.loss_weights
    formula = " + ".join(f"{w:g}*{name}" for name, w in weights.items())
    distilled = recipe.kind == "distillation"
    base_dir = settings.teacher_dir if distilled else settings.start_dir
    source = source_name(base_dir)
    custom = {
        "recipe": recipe.name,
        ("teacher" if distilled else "start_model"): source,
        "steps": steps,
        "global_batch_size": train.global_batch_size,
        "per_device_batch_size": train.per_device_batch_size,
        "learning_rate": train.learning_rate,
        "data": list(settings.shard_dirs),
        "losses": dict(weights),
        "temperature": recipe.temperature if distilled else None,
        "teacher_dropout": bool(train.teacher_dropout) if distilled else None,
        "parameters": parameters,
    }
    data = ModelCardData(
        base_model=hub_id(base_dir),
        library_name="transformers",
        pipeline_tag="fill-mask",
        tags=[
            "compact-biomed",
            "biomedical",
            "fill-mask",
            recipe.name,
            "knowledge-distillation" if distilled else "continual-pretraining",
        ],
        **{k: v for k, v in custom.items() if v is not None},
    )
    shape = (
        f"{student_config.model_type}, {student_config.num_hidden_layers} layers, hidden "
        f"{getattr(student_config, 'hidden_size', getattr(student_config, 'dim', '?'))}, "
        f"vocabulary {student_config.vocab_size}"
    )
    final_text = ", ".join(f"{k} {v:.4f}" for k, v in final.items() if isinstance(v, float)) or "not logged"
    facts = [
        f"Recipe `{recipe.name}`: {recipe.summary}",
        f"{'Teacher' if distilled else 'Start model'}: `{source}`",
        f"Student: {shape}; {parameters:,} parameters",
        f"Loss: {formula}",
        (
            f"{steps} optimizer steps, global batch {train.global_batch_size}, peak learning rate "
            f"{train.learning_rate}, {train.lr_scheduler} schedule, warmup {train.warmup_steps}, weight decay "
            f"{train.weight_decay}, MLM probability {train.mlm_probability}"
        ),
        (
            f"Per-device micro-batch {train.per_device_batch_size}, accumulated to the global batch "
            f"({micro_batch_origin})"
        ),
    ]
    if distilled:
        mode = "on (as the official scripts)" if train.teacher_dropout else "off (teacher in eval mode)"
        facts.append(f"Teacher dropout during distillation: {mode}")
    facts.append(f"Final logged losses: {final_text}")
    return ModelCard(
        f"---\n{data.to_yaml()}\n---\n\n"
        f"# {settings.model_name or recipe.name}\n\n"
        'Trained by compact-biomed, reproducing Rohanian et al. 2022, "On the Effectiveness of Compact Biomedical '
        'Transformers" (arXiv 2209.03182).\n\n'
        + "".join(f"- {fact}\n" for fact in facts)
        + "\n`train_log.jsonl` holds one line per logging step (unweighted loss terms).\n"
    )


def export(objective: recipes.PretrainingObjective, tokenizer, out_dir: str, card: ModelCard, rows: list[dict]) -> None:
    """Write the student alone (no teacher, no fit_dense), its tokenizer, model card and log; all or nothing."""
    with atomic_path(out_dir, is_dir=True, step="pretrain") as tmp:
        objective.student.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        card.save(tmp / "README.md")
        (tmp / "train_log.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
