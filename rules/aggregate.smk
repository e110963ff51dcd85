# Results: F1 mean and standard deviation over seeds, models as rows and datasets as columns.


localrules:
    aggregate,


rule aggregate:
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
    params:
        models=TABLE_MODELS,
        datasets=DATASETS,
        mode=config["ner"]["table_mode"],
        demo=config["demo"]["enabled"],
    log:
        "logs/aggregate.log",
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/aggregate.py"
