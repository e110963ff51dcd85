"""Snakemake adapter: parameters, disk size and inference speed of one model on the NER test sets."""
from compact_biomed import model_stats
from compact_biomed.smk import run


def step(smk):
    test_sets = dict(zip(smk.params.datasets, smk.input.test_sets))
    model_stats.write(smk.input.model, test_sets, smk.output[0], batch_size=smk.params.batch_size,
                      max_length=smk.params.max_length, min_seconds=smk.params.min_seconds, threads=smk.threads)


run(snakemake, step)
