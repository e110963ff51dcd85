"""Snakemake adapter for rules/shards.smk: the corpus tokenised in shards, and their manifest
(compact_biomed.shards)."""

from compact_biomed import shards
from compact_biomed.smk import run


def tokenize_shard(smk):
    shards.tokenize_shard(
        smk.input.corpus,
        smk.input.tokenizer,
        smk.output[0],
        shard=int(smk.wildcards.shard),
        num_shards=int(smk.wildcards.total),
        max_length=smk.params.max_length,
        mode=smk.params.mode,
    )


def shard_manifest(smk):
    shards.write_manifest(list(smk.input), smk.output[0])


run(snakemake, tokenize_shard, shard_manifest)
