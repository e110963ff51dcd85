"""Snakemake adapter: BioBERT's NER datasets archive, downloaded and extracted into the data folder."""
from compact_biomed import ner_archive
from compact_biomed.smk import run

run(snakemake, lambda smk: ner_archive.fetch(smk.params.url, smk.params.data_dir, smk.params.datasets))
