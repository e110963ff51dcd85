# PubMed baseline: fetch each file (md5-verified), then parse all of them into one corpus table.


localrules:
    fetch_pubmed,


rule fetch_pubmed:
    # One job per file so a cluster fetches them in parallel; a local rule, as compute nodes often lack internet.
    input:
        xml=pubmed_source(".xml.gz"),
        md5=pubmed_source(".xml.gz.md5"),
    output:
        xml="results/pubmed/raw/{name}.xml.gz",
        md5="results/pubmed/raw/{name}.xml.gz.md5",
    params:
        local_dir=config["pubmed"]["local_dir"],
        base_url=config["pubmed"]["base_url"],
    log:
        "logs/fetch_pubmed/{name}.log",
    retries: 2
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/fetch_pubmed.py"


rule build_corpus:
    input:
        expand("results/pubmed/raw/{name}.xml.gz", name=PUBMED_FILES),
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
