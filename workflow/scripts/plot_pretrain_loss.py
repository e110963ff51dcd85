"""Snakemake adapter: pre-training loss curves of every compact model, from each export's train_log.jsonl."""
from pathlib import Path

from compact_biomed import plots
from compact_biomed.smk import run


def step(smk):
    logs = {model: Path(model_dir) / "train_log.jsonl" for model, model_dir in zip(smk.params.models, smk.input)}
    plots.plot_losses(logs, smk.output[0])


run(snakemake, step)
