"""Snakemake adapter: write one demo NER set in BioBERT's layout (train/devel/test/train_dev.tsv)."""
from pathlib import Path

from compact_biomed import demo
from compact_biomed.smk import run


def step(smk):
    kind = smk.wildcards.dataset.split("-")[-1]  # demo-chem, demo-disease
    sizes = smk.params.sizes
    out_dir = Path(smk.output[0]).parent
    demo.write_ner_dataset(out_dir, kind, seed=0, n_train=sizes["train"], n_dev=sizes["dev"], n_test=sizes["test"])


run(snakemake, step)
