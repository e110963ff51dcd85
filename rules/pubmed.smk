# PubMed: fetch each baseline file (md5-verified) and parse each to Parquet (rules/corpus.smk merges them).
# With `pubmed.source: huggingface` the Hugging Face dataset, in the same parsed layout, replaces both.


localrules:
    fetch_pubmed,
    fetch_huggingface_pubmed,


rule fetch_pubmed:
    # One job per file so a cluster fetches them in parallel; a local rule, as compute nodes often lack internet.
    # Only for downloads (pubmed.local_dir: null). A failed download (network, or an md5 mismatch from a corrupted
    # transfer) leaves nothing behind and is retried as a job.
    output:
        xml="results/pubmed/raw/{name}.xml.gz",
        md5="results/pubmed/raw/{name}.xml.gz.md5",
    log:
        "logs/fetch_pubmed/{name}.log",
    retries: 3
    conda:
        "../environment.yml"
    params:
        base_url=config["pubmed"]["base_url"],
    script:
        "../workflow/scripts/pubmed.py"


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
        "../workflow/scripts/pubmed.py"


rule fetch_huggingface_pubmed:
    # The paper's source (spec §2), streamed from the hub (a local rule: it needs internet) or a local folder.
    output:
        "results/pubmed/parsed/huggingface.parquet",
    log:
        "logs/fetch_huggingface_pubmed.log",
    retries: 2
    conda:
        "../environment.yml"
    params:
        dataset=config["pubmed"].get("huggingface"),
    script:
        "../workflow/scripts/pubmed.py"
