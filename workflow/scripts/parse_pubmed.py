"""Snakemake adapter: one PubMed XML file parsed into Parquet (citations, deletions flagged)."""
from compact_biomed import corpus
from compact_biomed.smk import run

run(snakemake, lambda smk: print(corpus.parse_to_parquet(smk.input[0], smk.output[0])))
