# The pre-training corpus: the parsed files merged (newest version of each citation, deletions applied) into
# one table with the training text.


rule build_corpus:
    # Holds the key columns of every record in memory (about 60 bytes each), never the whole text.
    input:
        parsed_pubmed_files(),
    output:
        corpus="results/pubmed/corpus.parquet",
        stats="results/pubmed/corpus_stats.json",
    log:
        "logs/build_corpus.log",
    conda:
        "../environment.yml"
    params:
        text_format=config["pubmed"]["text_format"],
    script:
        "../workflow/scripts/corpus.py"
