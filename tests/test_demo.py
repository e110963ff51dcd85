"""The demo's generated inputs are deterministic and in the real formats."""

import gzip
import hashlib

from compact_biomed import demo


def test_pubmed_file_is_deterministic_with_ncbi_md5_sidecar(tmp_path):
    a, b = tmp_path / "a" / "pubmed26n0001.xml.gz", tmp_path / "b" / "pubmed26n0001.xml.gz"
    demo.write_pubmed_file(a, 1, 40, seed=3, delete=[7])
    demo.write_pubmed_file(b, 1, 40, seed=3, delete=[7])
    assert a.read_bytes() == b.read_bytes()
    digest = hashlib.md5(a.read_bytes()).hexdigest()
    assert (tmp_path / "a" / "pubmed26n0001.xml.gz.md5").read_text() == f"MD5(pubmed26n0001.xml.gz)= {digest}\n"
    xml = gzip.decompress(a.read_bytes()).decode()
    assert xml.count("<PubmedArticle>") == 40
    assert '<DeleteCitation><PMID Version="1">7</PMID></DeleteCitation>' in xml


def read_conll(path):
    sentences, current = [], []
    for line in path.read_text().splitlines():
        if not line:
            sentences.append(current)
            current = []
        else:
            current.append(tuple(line.split("\t")))
    return sentences


def test_ner_dataset_layout_and_unseen_test_entities(tmp_path):
    demo.write_ner_dataset(tmp_path, "chem", seed=0, n_train=200, n_dev=20, n_test=100)
    train, dev, test = (read_conll(tmp_path / f) for f in ("train.tsv", "devel.tsv", "test.tsv"))
    assert (len(train), len(dev), len(test)) == (200, 20, 100)
    assert read_conll(tmp_path / "train_dev.tsv") == train + dev
    tags = {t for s in train for _, t in s}
    assert tags == {"B", "I", "O"}
    entities = lambda split: {w.lower() for s in split for w, t in s if t == "B"}
    unseen = entities(test) - entities(train)
    assert len(unseen) > 10  # the test set measures generalisation, not memorised names


def test_checkpoint_source_names_hub_id_or_path(tmp_path):
    from compact_biomed.base_models import SOURCE_FILE, source_name
    from compact_biomed.io import write_json

    assert source_name(tmp_path) == str(tmp_path)  # a user's own folder
    write_json(tmp_path / SOURCE_FILE, {"hub_id": "dmis-lab/biobert-base-cased-v1.2", "revision": None})
    assert source_name(tmp_path) == "dmis-lab/biobert-base-cased-v1.2"
    write_json(tmp_path / SOURCE_FILE, {"random": "bert", "seed": 0})
    assert source_name(tmp_path) == str(tmp_path)
