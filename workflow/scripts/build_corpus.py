"""Snakemake adapter: parse the baseline files into the corpus table (Parquet) and its statistics."""
from compact_biomed import pubmed
from compact_biomed.smk import run

run(snakemake, lambda smk: pubmed.build_corpus(list(smk.input), smk.output.corpus, smk.output.stats,
                                                recipe=smk.params.recipe))
