"""Snakemake adapter: the parsed files merged into the corpus table (Parquet) and its statistics."""
from compact_biomed import corpus
from compact_biomed.smk import run

run(snakemake, lambda smk: corpus.build_corpus(list(smk.input), smk.output.corpus, smk.output.stats,
                                                recipe=smk.params.recipe))
