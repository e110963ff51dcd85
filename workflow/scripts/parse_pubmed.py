"""Snakemake adapter: one PubMed XML file, md5-verified, parsed into Parquet (citations, deletions flagged)."""
from compact_biomed import corpus, pubmed
from compact_biomed.smk import run


def step(smk):
    pubmed.verify(smk.input.xml, smk.input.md5)
    print(corpus.parse_to_parquet(smk.input.xml, smk.output[0]))


run(snakemake, step)
