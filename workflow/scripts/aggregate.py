"""Snakemake adapter: the F1 tables over seeds (Markdown, tidy CSV, LaTeX, HTML), each protocol beside its published values."""
from compact_biomed import aggregate
from compact_biomed.smk import run


def step(smk):
    aggregate.write_tables(list(smk.input.metrics), smk.output.markdown, smk.output.csv, models=smk.params.models,
                           datasets=smk.params.datasets, mode=smk.params.mode, latex_path=smk.output.latex,
                           published=smk.input.get("published"), html_path=smk.output.html,
                           model_dirs=dict(zip(smk.params.models, smk.input.models)), demo=smk.params.demo)


run(snakemake, step)
