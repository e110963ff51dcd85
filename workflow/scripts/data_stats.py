"""Snakemake adapter: corpus and tokenisation-shard statistics as tables (Markdown, HTML for the report)."""
from compact_biomed import aggregate
from compact_biomed.smk import run

run(snakemake, lambda smk: aggregate.write_data_stats(smk.input.corpus, list(smk.input.manifests),
                                                      smk.output.markdown, smk.output.html,
                                                      teacher=smk.params.teacher))
