"""Snakemake adapter: parameters, disk size and inference speed of every model on the NER test sets."""
from compact_biomed import model_stats
from compact_biomed.smk import run


def step(smk):
    test_sets = dict(zip(smk.params.datasets, smk.input.test_sets))
    for model_dir, out in zip(smk.input.models, smk.output):
        model_stats.write(model_dir, test_sets, out, batch_size=smk.params.batch_size,
                          max_length=smk.params.max_length, min_seconds=smk.params.min_seconds, threads=smk.threads)


run(snakemake, step)
