"""Snakemake adapter: a model as a local Hugging Face directory, from the hub or randomly initialised (demo)."""
from compact_biomed import checkpoints
from compact_biomed.smk import run


def step(smk):
    source, out_dir = smk.params.source, smk.output[0]
    if "hub_id" in source:
        checkpoints.from_hub(source["hub_id"], out_dir, revision=source.get("revision"),
                             tokenizer_id=source.get("tokenizer_hub_id"))
    else:
        texts = checkpoints.corpus_texts(smk.input[0])
        checkpoints.random_init(texts, out_dir, seed=0, **source["random"])


run(snakemake, step)
