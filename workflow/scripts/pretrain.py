"""Snakemake adapter for rules/pretrain.smk: pre-train one compact model (compact_biomed.pretrain).

With several GPUs in the job (`resources: gpu`), training runs under torchrun, one process per GPU.
"""
from compact_biomed.pretrain.launch import run_pretraining
from compact_biomed.smk import run


def pretrain(smk):
    kwargs = dict(recipe=smk.params.recipe, shard_dirs=list(smk.input.shards), out_dir=smk.output[0],
                  checkpoint_dir=smk.params.checkpoint_dir, train=smk.params.train,
                  teacher_dir=smk.input.get("teacher"), start_dir=smk.input.get("start"),
                  student=smk.params.student, seed=smk.params.seed, model_name=smk.wildcards.student)
    run_pretraining(kwargs, gpus_requested=int(smk.resources.get("gpu", 0) or 0))


run(snakemake, pretrain)
