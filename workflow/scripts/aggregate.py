"""Snakemake adapter: the F1 table over seeds (Markdown, tidy CSV, LaTeX), beside the paper's reported values."""
from compact_biomed import aggregate
from compact_biomed.smk import run


def step(smk):
    aggregate.write_tables(list(smk.input.metrics), smk.output.markdown, smk.output.csv, models=smk.params.models,
                           datasets=smk.params.datasets, mode=smk.params.mode,
                           latex_path=smk.output.latex, paper_results=smk.input.get("paper_results"))


run(snakemake, step)
