"""Snakemake adapter: tokenise one shard of the corpus with one model's tokenizer."""
from compact_biomed import shards
from compact_biomed.smk import run


def step(smk):
    shards.tokenize_shard(smk.input.corpus, smk.input.tokenizer, smk.output[0],
                          shard=int(smk.wildcards.shard), num_shards=int(smk.wildcards.total),
                          max_length=smk.params.max_length, mode=smk.params.mode)


run(snakemake, step)
