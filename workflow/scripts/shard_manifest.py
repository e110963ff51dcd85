"""Snakemake adapter: the manifest (rows, tokens, checksums) of one tokenizer's shards."""
from compact_biomed import shards
from compact_biomed.smk import run

run(snakemake, lambda smk: shards.write_manifest(list(smk.input), smk.output[0]))
