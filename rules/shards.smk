# Tokenisation shards: the corpus tokenised once per tokenizer in use, in NUM_SHARDS parallel jobs.


rule tokenize_shard:
    input:
        corpus="results/pubmed/corpus.parquet",
        tokenizer=tokenizer_dir,
    output:
        directory("results/shards/{owner}/shard-{shard}-of-{total}"),
    log:
        "logs/tokenize_shard/{owner}-{shard}-of-{total}.log",
    conda:
        "../environment.yml"
    params:
        max_length=config["tokenize"]["max_length"],
        mode=config["tokenize"]["mode"],
    script:
        "../workflow/scripts/shards.py"


rule shard_manifest:
    input:
        lambda wc: shard_dirs(wc.owner),
    output:
        "results/shards/{owner}/manifest.json",
    log:
        "logs/shard_manifest/{owner}.log",
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/shards.py"
