# Base models as local Hugging Face directories: the teacher (also the BioBERT baseline) and the continual
# models' start models.


rule teacher:
    input:
        unpack(lambda wc: corpus_if_random(config["teacher"])),
    output:
        directory("results/teacher"),
    log:
        "logs/teacher.log",
    conda:
        "../environment.yml"
    params:
        source=config["teacher"],
    script:
        "../workflow/scripts/base_models.py"


rule start_model:
    input:
        unpack(lambda wc: corpus_if_random(config["models"][wc.student]["start"])),
    output:
        directory("results/start/{student}"),
    log:
        "logs/start_model/{student}.log",
    conda:
        "../environment.yml"
    params:
        source=lambda wc: config["models"][wc.student]["start"],
    script:
        "../workflow/scripts/base_models.py"
