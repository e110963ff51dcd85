"""Snakemake adapter for rules/figures.smk: the NER F1 and pre-training loss figures (compact_biomed.figures)."""

from pathlib import Path

from compact_biomed import figures
from compact_biomed.smk import run


def plot_ner_f1(smk):
    figures.plot_f1(
        smk.input[0], smk.output[0], models=smk.params.models, datasets=smk.params.datasets, demo=smk.params.demo
    )


def plot_pretrain_loss(smk):
    logs = {model: Path(model_dir) / "train_log.jsonl" for model, model_dir in zip(smk.params.models, smk.input)}
    figures.plot_losses(logs, smk.output[0])


run(snakemake, plot_ner_f1, plot_pretrain_loss)
