"""Snakemake adapter for rules/ner.smk: BioBERT's NER archive fetched, and one fine-tuning run
(compact_biomed.ner)."""

from pathlib import Path

from compact_biomed.ner import archive
from compact_biomed.ner.finetune import finetune
from compact_biomed.smk import run


def fetch_ner(smk):
    data_dir = Path(smk.output[0]).parent.parent  # <data_dir>/<dataset>/<split>.tsv
    archive.fetch(smk.params.url, data_dir, smk.params.datasets)


def finetune_ner(smk):
    out_dir = Path(smk.output.metrics).parent
    finetune(smk.input.model, smk.params.data_dir, out_dir, seed=int(smk.wildcards.seed), hparams=smk.params.hparams)


run(snakemake, fetch_ner, finetune_ner)
