"""Snakemake adapter: the F1 tables over seeds (Markdown, tidy CSV, LaTeX, HTML), beside the paper's values."""
from compact_biomed import aggregate
from compact_biomed.smk import run


def step(smk):
    aggregate.write_tables(list(smk.input.metrics), smk.output.markdown, smk.output.csv, models=smk.params.models,
                           datasets=smk.params.datasets, mode=smk.params.mode,
                           latex_path=smk.output.latex, paper_results=smk.input.get("paper_results"),
                           html_path=smk.output.html)


run(snakemake, step)
