# Results: F1 mean and standard deviation over seeds, models as rows and datasets as columns.


localrules:
    aggregate,


rule aggregate:
    input:
        metrics=expand(
            "results/ner/{model}/{dataset}/seed{seed}/metrics.json",
            model=[TEACHER, *MODELS],
            dataset=DATASETS,
            seed=SEEDS,
        ),
        paper_results=config["ner"]["paper_results"] or [],
    output:
        markdown="results/tables/ner_f1.md",
        csv="results/tables/ner_f1.csv",
        latex="results/tables/ner_f1.tex",
    params:
        models=cfg.table_models(config),
        datasets=DATASETS,
        mode=config["ner"]["table_mode"],
    log:
        "logs/aggregate.log",
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/aggregate.py"
