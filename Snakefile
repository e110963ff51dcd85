# compact-biomed: "On the Effectiveness of Compact Biomedical Transformers" (Rohanian et al.), end to end.
# PubMed -> corpus -> tokenisation shards -> base models (teacher, starts) -> six compact models -> NER x seeds
# -> tables and figures.
# `snakemake --cores 2` runs the embedded offline demo (config/config.yaml); the full reproduction is
# `snakemake --configfile config/paper.yaml --workflow-profile profiles/slurm` (see README.md).


# The demo config unless a --configfile is given: Snakemake would deep-merge a --configfile into it, mixing the
# demo's random base models into the paper's hub ones. `--config key=value` applies on top of either.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/demo.smk"


# Pre-training's stages exist only when a model is trained here; published models skip them.
if TRAINED_MODELS:

    include: "rules/pubmed.smk"
    include: "rules/corpus.smk"
    include: "rules/shards.smk"
    include: "rules/base_models.smk"
    include: "rules/pretrain.smk"


include: "rules/pretrained.smk"
include: "rules/ner.smk"
include: "rules/tables.smk"
include: "rules/figures.smk"


if workflow.is_main_process:
    check_folder_outputs()


# `snakemake --report report.html`: this description, then every output marked report() with its caption.
report: "workflow/report/workflow.rst"


rule all:
    input:
        "results/tables/ner_f1.md",
        "results/tables/ner_f1.csv",
        "results/tables/ner_f1.html",
        "results/figures/ner_f1.png",
        "results/tables/model_stats.md",
        "results/tables/model_stats.html",
        # pre-training's results, when a model is trained here
        ["results/figures/pretrain_loss.png", "results/tables/data_stats.html"] if TRAINED_MODELS else [],
