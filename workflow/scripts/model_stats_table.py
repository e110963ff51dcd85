"""Snakemake adapter: every model's size and speed in one table (Markdown, CSV, HTML for the report)."""
from compact_biomed import aggregate
from compact_biomed.smk import run

run(snakemake, lambda smk: aggregate.write_model_stats(list(smk.input), smk.output.markdown, smk.output.csv,
                                                       smk.output.html, models=smk.params.models,
                                                       reference=smk.params.reference, demo=smk.params.demo))
