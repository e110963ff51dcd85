# The six compact models: distillation from the teacher or continual MLM from a start model.
# Trainer checkpoints live in results/checkpoints/{student}/run-<key>, outside the declared output, so a rerun
# after a kill resumes from the newest complete checkpoint instead of starting over; the key hashes the inputs'
# content and the settings, so changed inputs start afresh.
# The time limit a cluster job asks for comes from each model's measured speed (compact_biomed.pretrain.cost); the
# workflow profile's pretrain block sets everything else.
from compact_biomed.pretrain.cost import pretrain_runtime_minutes


rule pretrain:
    input:
        unpack(pretrain_inputs),
    output:
        directory("results/models/{student}"),
    log:
        "logs/pretrain/{student}.log",
    conda:
        "../environment.yml"
    threads: config["threads"]
    resources:
        gpu=GPU_PER_JOB,
        runtime=lambda wc: pretrain_runtime_minutes(config, wc.student),
        gpu_slots=GPU_PER_JOB * SLOTS_PER_GPU,  # the GPU alone: no NER job beside it
    params:
        # The job reads its settings from the config (compact_biomed.pretrain.Settings); these copies make
        # Snakemake rerun it when they change (it compares params, not the config). Not the speed settings.
        recipe=lambda wc: config["models"][wc.student]["recipe"],
        student=lambda wc: config["models"][wc.student].get("student", {}),
        train=lambda wc: cfg.learning_settings(config, wc.student),
        seed=lambda wc: config["models"][wc.student]["seed"],
        checkpoint_dir=lambda wc: f"results/checkpoints/{wc.student}",
    script:
        "../workflow/scripts/pretrain.py"
