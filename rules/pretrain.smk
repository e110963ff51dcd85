# The six compact models: distillation from the teacher or continual MLM from a start checkpoint.
# Trainer checkpoints live in results/checkpoints/{student}, outside the declared output, so a rerun after a
# kill resumes from the newest complete checkpoint instead of starting over.


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        directory("results/models/{student}"),
    params:
        recipe=lambda wc: config["models"][wc.student]["recipe"],
        student=lambda wc: config["models"][wc.student].get("student", {}),
        train=lambda wc: cfg.train_settings(config, wc.student),
        seed=lambda wc: config["models"][wc.student].get("seed", 42),
        checkpoint_dir=lambda wc: f"results/checkpoints/{wc.student}",
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
        gpu_slots=GPU_PER_JOB * GPU_SLOTS,  # the GPU alone: no NER job beside it
    log:
        "logs/pretrain/{student}.log",
    conda:
        "../environment.yml"
    script:
        "../workflow/scripts/pretrain.py"
