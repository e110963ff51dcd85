# Local Hugging Face directories for the teacher (also the BioBERT baseline) and the continual models' starts.


rule teacher:
    input:
        corpus_if_random(config["teacher"]),
    output:
        directory("results/teacher"),
    params:
        source=config["teacher"],
    log:
        "logs/teacher.log",
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/checkpoint.py"


rule start_checkpoint:
    input:
        lambda wc: corpus_if_random(config["models"][wc.student]["start"]),
    output:
        directory("results/start/{student}"),
    params:
        source=lambda wc: config["models"][wc.student]["start"],
    log:
        "logs/start_checkpoint/{student}.log",
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/checkpoint.py"
