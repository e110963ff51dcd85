"""Snakemake adapter: the F1 table over seeds (Markdown and CSV)."""
from compact_biomed import aggregate
from compact_biomed.smk import run


def step(smk):
    aggregate.write_tables(list(smk.input), smk.output.markdown, smk.output.csv, models=smk.params.models,
                           datasets=smk.params.datasets, mode=smk.params.mode)


run(snakemake, step)
