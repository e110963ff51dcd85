"""Snakemake adapter: pre-train one compact model (distillation or continual MLM) and export it."""
from compact_biomed import pretrain
from compact_biomed.smk import run


def step(smk):
    pretrain.run(smk.params.recipe, list(smk.input.shards), smk.output[0], smk.params.checkpoint_dir,
                 train=smk.params.train, teacher_dir=smk.input.get("teacher"), start_dir=smk.input.get("start"),
                 student=smk.params.student, seed=smk.params.seed, model_name=smk.wildcards.student)


run(snakemake, step)
