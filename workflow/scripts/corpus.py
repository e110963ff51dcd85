"""Snakemake adapter for rules/corpus.smk: the parsed files merged into the corpus (compact_biomed.corpus)."""

from compact_biomed import corpus
from compact_biomed.smk import run


def build_corpus(smk):
    corpus.build_corpus(list(smk.input), smk.output.corpus, smk.output.stats, text_format=smk.params.text_format)


run(snakemake, build_corpus)
