"""Snakemake adapter: BioBERT's NER datasets archive, downloaded and extracted into the data folder."""
from pathlib import Path

from compact_biomed import ner_archive
from compact_biomed.smk import run


def step(smk):
    data_dir = Path(smk.output[0]).parent.parent  # <data_dir>/<dataset>/<split>.tsv
    ner_archive.fetch(smk.params.url, data_dir, smk.params.datasets)


run(snakemake, step)
