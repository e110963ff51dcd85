"""Snakemake adapter: the NER F1 figure (mean and sd over seeds, both scoring modes) from the tidy table."""
from compact_biomed import plots
from compact_biomed.smk import run

run(snakemake, lambda smk: plots.plot_f1(smk.input[0], smk.output[0], models=smk.params.models,
                                         datasets=smk.params.datasets, demo=smk.params.demo))
