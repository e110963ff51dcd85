"""Snakemake adapter: the Hugging Face pubmed dataset, streamed into the parsed Parquet layout."""
from compact_biomed import corpus
from compact_biomed.smk import run

run(snakemake, lambda smk: print(corpus.huggingface_to_parquet(out_parquet=smk.output[0], **smk.params.dataset)))
