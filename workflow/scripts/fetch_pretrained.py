"""Snakemake adapter: a published checkpoint (hub id at a pinned revision, or a local folder) as a local directory."""
from compact_biomed import pretrained
from compact_biomed.smk import run


def step(smk):
    provenance = pretrained.fetch(smk.params.source, smk.output[0], key=smk.params.key)
    print(f"fetched {pretrained.provenance_text(provenance)}")


run(snakemake, step)
