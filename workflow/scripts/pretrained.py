"""Snakemake adapter for rules/pretrained.smk: a published model row fetched (compact_biomed.pretrained)."""

from compact_biomed import pretrained
from compact_biomed.smk import run


def fetch_pretrained(smk):
    provenance = pretrained.fetch(smk.params.source, smk.output[0], key=smk.params.key)
    print(f"fetched {pretrained.provenance_text(provenance)}")


run(snakemake, fetch_pretrained)
