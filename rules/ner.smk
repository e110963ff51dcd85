# NER fine-tuning: every table row (the teacher baseline, the compact or released models) x dataset x seed,
# scored with seqeval.
DATA_DIR = config["ner"]["data_dir"]
# The datasets fetch_ner extracts; any other is a folder of the user's in DATA_DIR, read where it is.
ARCHIVE_DATASETS = [name for name in DATASETS if cfg.dataset_source(config, name) == "archive"]

if ARCHIVE_DATASETS:

    localrules:
        fetch_ner,

    rule fetch_ner:
        # BioBERT's datasets.tar.gz, the paper's source; datasets/NER/<name>/ is extracted into data_dir.
        output:
            expand(f"{DATA_DIR}/{{dataset}}/{{split}}.tsv", dataset=ARCHIVE_DATASETS, split=SPLITS),
        log:
            "logs/fetch_ner.log",
        retries: 3  # a failed download leaves nothing behind and is retried as a job
        conda:
            "../environment.yml"
        params:
            url=config["ner"]["archive_url"],
            datasets=ARCHIVE_DATASETS,
        script:
            "../workflow/scripts/ner.py"


rule finetune_ner:
    input:
        model=model_dir,
        data=ner_split_files,
    output:
        metrics="results/ner/{model}/{dataset}/seed{seed}/metrics.json",
        predictions="results/ner/{model}/{dataset}/seed{seed}/predictions.tsv",
    log:
        "logs/finetune_ner/{model}/{dataset}/seed{seed}.log",
    conda:
        "../environment.yml"
    # On a GPU a fine-tuning's CPU side is one Python thread (8 jobs at 1 thread each ran at 4.2-4.8x one job on an
    # H100, benchmarks/results/h100-ner-bert-base-8-jobs.txt); more would let --cores cap the jobs below gpu_slots.
    threads: 1 if GPU_PER_JOB else config["threads"]
    resources:
        gpu_slots=GPU_PER_JOB,  # one of the GPU's slots, not the whole GPU (common.smk)
    params:
        data_dir=lambda wc: f"{DATA_DIR}/{wc.dataset}",
        hparams=config["ner"]["hparams"],
    script:
        "../workflow/scripts/ner.py"
