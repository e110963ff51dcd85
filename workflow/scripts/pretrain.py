"""Snakemake adapter for rules/pretrain.smk: pre-train one compact model (compact_biomed.pretrain).

With several GPUs in the job (`resources: gpu`), training runs under torchrun, one process per GPU.
"""

import compact_biomed.pretrain
from compact_biomed.smk import run


def pretrain(smk):
    settings = compact_biomed.pretrain.Settings.from_config(
        smk.config,
        smk.wildcards.student,
        smk.input.shards,
        smk.output[0],
        smk.params.checkpoint_dir,
        teacher_dir=smk.input.get("teacher"),
        start_dir=smk.input.get("start"),
    )
    compact_biomed.pretrain.run(settings, gpus=int(smk.resources.get("gpu", 0) or 0))


run(snakemake, pretrain)
