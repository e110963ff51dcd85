# The tables: NER F1 mean and standard deviation over seeds (models as rows, datasets as columns) beside the
# published values; model size and speed; the corpus and shards in numbers. Everything marked report() lands in
# `snakemake --report report.html`, with its caption from workflow/report/.


localrules:
    ner_f1_table,
    model_stats_table,


rule ner_f1_table:
    input:
        metrics=expand(
            "results/ner/{model}/{dataset}/seed{seed}/metrics.json",
            model=TABLE_MODELS,
            dataset=DATASETS,
            seed=SEEDS,
        ),
        published=config["ner"]["published"] or [],
        models=[model_path(m) for m in TABLE_MODELS],  # each row's provenance (source.json)
    output:
        markdown="results/tables/ner_f1.md",
        csv=report(
            "results/tables/ner_f1.csv",
            caption="../workflow/report/ner_f1_csv.rst",
            category="NER results",
            labels={"result": "F1 statistics (tidy CSV)"},
        ),
        latex="results/tables/ner_f1.tex",
        html=report(
            "results/tables/ner_f1.html",
            caption="../workflow/report/ner_f1.rst",
            category="NER results",
            labels={"result": "F1 table"},
        ),
    log:
        "logs/ner_f1_table.log",
    conda:
        "../environment.yml"
    params:
        models=TABLE_MODELS,
        datasets=DATASETS,
        mode=config["ner"]["table_mode"],
        demo=config["demo"]["enabled"],
    script:
        "../workflow/scripts/tables.py"


rule model_stats:
    # One job measures every model: the same process and device make the speeds comparable, and torch and
    # transformers are imported once instead of once per model. On a GPU, the device the NER runs use.
    input:
        models=[model_path(m) for m in TABLE_MODELS],
        test_sets=expand(f"{DATA_DIR}/{{dataset}}/test.tsv", dataset=DATASETS),
    output:
        expand("results/model_stats/{model}.json", model=TABLE_MODELS),
    log:
        "logs/model_stats.log",
    conda:
        "../environment.yml"
    # On a workstation without a GPU, every core: no job runs beside the measurement (fine-tunings beside it made
    # identical models 1.00/1.02/1.42x); on a GPU, the GPU alone.
    threads: config["threads"] if GPU_PER_JOB else workstation_cores(config["threads"])
    resources:
        gpu=GPU_PER_JOB,
        gpu_slots=GPU_PER_JOB * SLOTS_PER_GPU,  # the GPU alone: no NER job beside it
    params:
        datasets=DATASETS,
        batch_size=config["model_stats"]["batch_size"],
        min_seconds=config["model_stats"]["min_seconds"],
        max_length=config["ner"]["hparams"]["max_length"],
    script:
        "../workflow/scripts/tables.py"


rule model_stats_table:
    input:
        expand("results/model_stats/{model}.json", model=TABLE_MODELS),
    output:
        markdown="results/tables/model_stats.md",
        csv=report(
            "results/tables/model_stats.csv",
            caption="../workflow/report/model_stats_csv.rst",
            category="Models",
            labels={"result": "size and speed (CSV, raw numbers)"},
        ),
        html=report(
            "results/tables/model_stats.html",
            caption="../workflow/report/model_stats.rst",
            category="Models",
            labels={"result": "size and speed"},
        ),
    log:
        "logs/model_stats_table.log",
    conda:
        "../environment.yml"
    params:
        models=TABLE_MODELS,
        reference=BASELINE,
        demo=config["demo"]["enabled"],
    script:
        "../workflow/scripts/tables.py"


# Pre-training's data exists only when a model is trained here.
if TRAINED_MODELS:

    localrules:
        data_stats_table,

    rule data_stats_table:
        input:
            corpus="results/pubmed/corpus_stats.json",
            manifests=expand("results/shards/{owner}/manifest.json", owner=TOKENIZER_OWNERS),
        output:
            markdown="results/tables/data_stats.md",
            html=report(
                "results/tables/data_stats.html",
                caption="../workflow/report/data_stats.rst",
                category="Data",
                labels={"result": "corpus and shards"},
            ),
        log:
            "logs/data_stats_table.log",
        conda:
            "../environment.yml"
        params:
            teacher=TEACHER,
        script:
            "../workflow/scripts/tables.py"
