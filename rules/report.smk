# The report's results beyond the F1 table: model size and speed, corpus and shard statistics, figures.
# Everything marked report() lands in `snakemake --report report.html`, with its caption from workflow/report/.

localrules:
    model_stats_table,
    plot_ner_f1,


rule model_stats:
    # One job measures every model: the same process and device make the speeds comparable, and torch and
    # transformers are imported once instead of once per model. On a GPU, the device the NER runs use.
    input:
        models=[model_path(m) for m in TABLE_MODELS],
        test_sets=expand(f"{DATA_DIR}/{{dataset}}/test.tsv", dataset=DATASETS),
    output:
        expand("results/model_stats/{model}.json", model=TABLE_MODELS),
    params:
        datasets=DATASETS,
        batch_size=config["model_stats"]["batch_size"],
        min_seconds=config["model_stats"]["min_seconds"],
        max_length=config["ner"]["hparams"].get("max_length", 512),
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
        gpu_slots=GPU_PER_JOB * GPU_SLOTS,  # the GPU alone: no NER job beside it
    log:
        "logs/model_stats.log",
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/model_stats.py"


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
    params:
        models=TABLE_MODELS,
        reference=BASELINE,
        demo=config["demo"]["enabled"],
    log:
        "logs/model_stats_table.log",
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/model_stats_table.py"


rule plot_ner_f1:
    input:
        "results/tables/ner_f1.csv",
    output:
        report(
            "results/figures/ner_f1.png",
            caption="../workflow/report/ner_f1_plot.rst",
            category="NER results",
            labels={"result": "F1 figure"},
        ),
    params:
        models=TABLE_MODELS,
        datasets=DATASETS,
        demo=config["demo"]["enabled"],
    log:
        "logs/plot_ner_f1.log",
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/plot_ner_f1.py"


# Pre-training's results exist only when a model is trained here.
if TRAINED_MODELS:

    localrules:
        data_stats,
        plot_pretrain_loss,

    rule data_stats:
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
        params:
            teacher=TEACHER,
        log:
            "logs/data_stats.log",
        conda:
            "../environment.yml"
        script:
            "../workflow/scripts/data_stats.py"

    rule plot_pretrain_loss:
        input:
            expand("results/models/{student}", student=TRAINED_MODELS),
        output:
            report(
                "results/figures/pretrain_loss.png",
                caption="../workflow/report/pretrain_loss.rst",
                category="Pre-training",
                labels={"result": "loss curves"},
            ),
        params:
            models=TRAINED_MODELS,
        log:
            "logs/plot_pretrain_loss.log",
        conda:
            "../environment.yml"
        script:
            "../workflow/scripts/plot_pretrain_loss.py"
