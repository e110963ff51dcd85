"""Snakemake adapter: one PubMed baseline file, downloaded and md5-verified."""
from pathlib import Path

from compact_biomed import pubmed
from compact_biomed.smk import run


def step(smk):
    out_dir = Path(smk.output.xml).parent
    pubmed.fetch(smk.wildcards.name, out_dir, base_url=smk.params.base_url)


run(snakemake, step)
