"""Snakemake adapter for rules/pubmed.smk: PubMed baseline files fetched and parsed (compact_biomed.pubmed)."""

from pathlib import Path

from compact_biomed import pubmed
from compact_biomed.smk import run


def fetch_pubmed(smk):
    pubmed.fetch(smk.wildcards.name, Path(smk.output.xml).parent, base_url=smk.params.base_url)


def parse_pubmed(smk):
    pubmed.verify(smk.input.xml, smk.input.md5)
    print(pubmed.parse_to_parquet(smk.input.xml, smk.output[0]))


def fetch_huggingface_pubmed(smk):
    print(pubmed.huggingface_to_parquet(out_parquet=smk.output[0], **smk.params.dataset))


run(snakemake, fetch_pubmed, parse_pubmed, fetch_huggingface_pubmed)
