# The figures: NER F1 per model and dataset with error bars over seeds, and the pre-training loss curves.


localrules:
    plot_ner_f1,


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
    log:
        "logs/plot_ner_f1.log",
    conda:
        "../environment.yml"
    params:
        models=TABLE_MODELS,
        datasets=DATASETS,
        demo=config["demo"]["enabled"],
    script:
        "../workflow/scripts/figures.py"


# Pre-training's results exist only when a model is trained here.
if TRAINED_MODELS:

    localrules:
        plot_pretrain_loss,

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
        log:
            "logs/plot_pretrain_loss.log",
        conda:
            "../environment.yml"
        params:
            models=TRAINED_MODELS,
        script:
            "../workflow/scripts/figures.py"
