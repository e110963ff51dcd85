# Published models (`models.<name>.pretrained`): fetched once from the hub at their pinned revision, or
# copied from a local folder, into results/pretrained/<name>; fine-tuned like the models trained here.


localrules:
    fetch_pretrained,


rule fetch_pretrained:
    # A local rule: downloads run where there is internet (cluster compute nodes often have none).
    input:
        # a local folder's files, not the folder: a file replaced in place leaves the folder's mtime as it was
        # (a hub row refetches when its revision changes)
        lambda wc: local_model_files(config["models"][wc.pretrained]["pretrained"].get("path")),
    output:
        directory("results/pretrained/{pretrained}"),
    log:
        "logs/fetch_pretrained/{pretrained}.log",
    conda:
        "../environment.yml"
    params:
        source=lambda wc: config["models"][wc.pretrained]["pretrained"],
        key=lambda wc: f"models.{wc.pretrained}.pretrained",
    script:
        "../workflow/scripts/pretrained.py"
