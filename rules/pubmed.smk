# PubMed: fetch each baseline file (md5-verified), parse each to Parquet, then merge them into one corpus table.
# With `pubmed.source: huggingface` the Hugging Face dataset replaces the first two steps.


localrules:
    fetch_pubmed,
    fetch_huggingface_pubmed,


rule fetch_pubmed:
    # One job per file so a cluster fetches them in parallel; a local rule, as compute nodes often lack internet.
    # Only for downloads (pubmed.local_dir: null). No Snakemake retries: the download retries itself with back-off,
    # and an md5 mismatch after those attempts will not change.
    output:
        xml="results/pubmed/raw/{name}.xml.gz",
        md5="results/pubmed/raw/{name}.xml.gz.md5",
    params:
        base_url=config["pubmed"]["base_url"],
    log:
        "logs/fetch_pubmed/{name}.log",
    retries: 0
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/fetch_pubmed.py"


rule parse_pubmed:
    # One job per file: the 1,200+ baseline files parse in parallel, each in constant memory, after their md5
    # check. No retries: a bad file fails the same way again.
    input:
        xml=pubmed_source(".xml.gz"),
        md5=pubmed_source(".xml.gz.md5"),
    output:
        "results/pubmed/parsed/{name}.parquet",
    log:
        "logs/parse_pubmed/{name}.log",
    retries: 0
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/parse_pubmed.py"


rule fetch_huggingface_pubmed:
    # The paper's source (spec §2), streamed from the hub (a local rule: it needs internet) or a local folder.
    output:
        "results/pubmed/parsed/huggingface.parquet",
    params:
        dataset=config["pubmed"].get("huggingface"),
    log:
        "logs/fetch_huggingface_pubmed.log",
    retries: 2
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/fetch_huggingface_pubmed.py"


rule build_corpus:
    # Holds the key columns of every record in memory (about 60 bytes each), never the whole text.
    input:
        parsed_pubmed_files(),
    output:
        corpus="results/pubmed/corpus.parquet",
        stats="results/pubmed/corpus_stats.json",
    params:
        recipe=config["pubmed"]["text_recipe"],
    log:
        "logs/build_corpus.log",
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/build_corpus.py"
