"""Snakemake adapter for rules/demo.smk: the offline demo's generated inputs (compact_biomed.demo)."""

from pathlib import Path

from compact_biomed import demo
from compact_biomed.smk import run


def demo_pubmed(smk):
    index, count = smk.params.index, smk.params.citations
    first_pmid = index * 100_000 + 1
    # Each later file deletes one citation of the first: exercises DeleteCitation across files.
    deletions = [3] if index > 0 else []
    demo.write_pubmed_file(smk.output.xml, first_pmid, count, seed=index, delete=deletions)


def demo_ner(smk):
    kind = smk.wildcards.dataset.split("-")[-1]  # demo-chem, demo-disease
    sizes = smk.params.sizes
    out_dir = Path(smk.output[0]).parent
    demo.write_ner_dataset(out_dir, kind, seed=0, n_train=sizes["train"], n_dev=sizes["dev"], n_test=sizes["test"])


run(snakemake, demo_pubmed, demo_ner)
