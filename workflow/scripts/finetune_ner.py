"""Snakemake adapter: fine-tune one model on one NER dataset with one seed; write metrics and predictions."""
from pathlib import Path

from compact_biomed import ner
from compact_biomed.smk import run


def step(smk):
    out_dir = Path(smk.output.metrics).parent
    ner.finetune(smk.input.model, smk.params.data_dir, out_dir, seed=int(smk.wildcards.seed),
                 hparams=smk.params.hparams)


run(snakemake, step)
