"""Snakemake adapter for rules/base_models.smk: the teacher and the start models as local Hugging Face
directories (compact_biomed.base_models)."""

from compact_biomed import base_models
from compact_biomed.smk import run


def teacher(smk):
    base_models.make(smk.params.source, smk.output[0], corpus=smk.input.get("corpus"))


def start_model(smk):
    base_models.make(smk.params.source, smk.output[0], corpus=smk.input.get("corpus"))


run(snakemake, teacher, start_model)
