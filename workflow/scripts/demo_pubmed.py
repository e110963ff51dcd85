"""Snakemake adapter: write one demo PubMed baseline file (and its .md5); the second file deletes a citation."""
from compact_biomed import demo
from compact_biomed.smk import run


def step(smk):
    index, count = smk.params.index, smk.params.citations
    first_pmid = index * 100_000 + 1
    # Each later file deletes one citation of the first: exercises DeleteCitation across files.
    deletions = [3] if index > 0 else []
    demo.write_pubmed_file(smk.output.xml, first_pmid, count, seed=index, delete=deletions)


run(snakemake, step)
