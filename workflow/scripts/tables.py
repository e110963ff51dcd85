"""Snakemake adapter for rules/tables.smk: the NER F1, model and data tables (compact_biomed.tables)."""

from compact_biomed.smk import run


def ner_f1_table(smk):
    from compact_biomed.tables import ner_f1

    ner_f1.write_tables(
        list(smk.input.metrics),
        smk.output.markdown,
        smk.output.csv,
        models=smk.params.models,
        datasets=smk.params.datasets,
        mode=smk.params.mode,
        latex_path=smk.output.latex,
        published=smk.input.get("published"),
        html_path=smk.output.html,
        model_dirs=dict(zip(smk.params.models, smk.input.models)),
        demo=smk.params.demo,
    )


def model_stats(smk):
    from compact_biomed.tables import model_stats

    model_stats.write_all(
        list(smk.input.models),
        dict(zip(smk.params.datasets, smk.input.test_sets)),
        list(smk.output),
        batch_size=smk.params.batch_size,
        max_length=smk.params.max_length,
        min_seconds=smk.params.min_seconds,
        threads=smk.threads,
    )


def model_stats_table(smk):
    from compact_biomed.tables import model_stats

    model_stats.write_table(
        list(smk.input),
        smk.output.markdown,
        smk.output.csv,
        smk.output.html,
        models=smk.params.models,
        reference=smk.params.reference,
        demo=smk.params.demo,
    )


def data_stats_table(smk):
    from compact_biomed.tables import data_stats

    data_stats.write_table(
        smk.input.corpus, list(smk.input.manifests), smk.output.markdown, smk.output.html, teacher=smk.params.teacher
    )


run(snakemake, ner_f1_table, model_stats, model_stats_table, data_stats_table)
