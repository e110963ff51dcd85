# The embedded offline demo's inputs, generated deterministically (only when demo.enabled is true).
if config["demo"]["enabled"]:

    rule demo_pubmed:
        output:
            xml="resources/demo/pubmed/{name}.xml.gz",
            md5="resources/demo/pubmed/{name}.xml.gz.md5",
        log:
            "logs/demo_pubmed/{name}.log",
        conda:
            "../environment.yml"
        params:
            index=lambda wc: PUBMED_FILES.index(wc.name),
            citations=config["demo"]["citations_per_file"],
        script:
            "../workflow/scripts/demo.py"

    rule demo_ner:
        output:
            expand("resources/demo/ner/{{dataset}}/{split}.tsv", split=SPLITS),
        log:
            "logs/demo_ner/{dataset}.log",
        conda:
            "../environment.yml"
        params:
            sizes=config["demo"]["ner_sentences"],
        script:
            "../workflow/scripts/demo.py"
