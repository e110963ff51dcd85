"""Config validation: both shipped configs are valid, and a bad value is reported with its key."""

import copy
import re

import pytest
import yaml
from conftest import REPO

from compact_biomed import config as cfg

SCHEMA = REPO / "config" / "schema.yaml"


def load(name):
    return yaml.safe_load((REPO / "config" / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "paper.yaml"])
def test_shipped_configs_are_valid(name):
    cfg.check(load(name), SCHEMA)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["tokenize"].update(num_shards=0), "tokenize.num_shards"),
        (lambda c: c["models"]["TinyBioBERT"].update(recipe="bert-of-theseus"), "models.TinyBioBERT.recipe"),
        (lambda c: c["ner"]["hparams"].update(learning_rate="fast"), "ner.hparams.learning_rate"),
        (lambda c: c["models"]["BioTinyBERT"].pop("start"), "models.BioTinyBERT"),
        (lambda c: c["pubmed"].update(files=["pubmed.xml"]), "pubmed.files.0"),
        (lambda c: c["train_defaults"].update(max_step=3), "train_defaults"),
        (lambda c: c["teacher"].update(name="DistilBioBERT"), "teacher.name"),
        (lambda c: c["pubmed"].update(source="huggingface"), "pubmed"),  # without its `huggingface` block
        (lambda c: c["pubmed"].update(source="hf", huggingface={"path": "x"}), "pubmed.source"),
        # "paper" and "word" name only the scoring protocols, no longer a tokenisation or label mode.
        (lambda c: c["tokenize"].update(mode="paper"), "tokenize.mode"),
        (lambda c: c["ner"]["hparams"].update(label_mode_train="word"), "ner.hparams.label_mode_train"),
        (lambda c: c["pubmed"].update(text_recipe="paper"), "pubmed"),  # the key is text_format now
        # A misspelt architecture key: transformers would store it and build the default architecture.
        (lambda c: c["models"]["TinyBioBERT"]["student"].update(hidden_sise=64), "models.TinyBioBERT.student"),
        (lambda c: c["teacher"]["random"]["config"].update(num_hiden_layers=2), "teacher.random.config"),
        (
            lambda c: c["models"]["BioDistilBERT"]["start"]["random"]["config"].update(hidden_size=64, n_layer=2),
            "models.BioDistilBERT.start.random.config",
        ),
    ],
)
def test_invalid_value_names_the_key(mutate, key):
    config = copy.deepcopy(load("config.yaml"))
    mutate(config)
    with pytest.raises(cfg.ConfigError, match=f"'{key}'"):
        cfg.check(config, SCHEMA)


def test_a_number_read_as_text_is_named_with_the_way_to_write_it():
    config = load("config.yaml")
    config["ner"]["hparams"] = yaml.safe_load("{learning_rate: 3e-3, epochs: 4}")  # YAML 1.1: no dot, a string
    with pytest.raises(cfg.ConfigError) as error:
        cfg.check(config, SCHEMA)
    assert str(error.value) == (
        "invalid config value at 'ner.hparams.learning_rate': '3e-3' is not of type 'number' "
        "(YAML reads 3e-3 as text: write 3.0e-3; a nested snakemake --config value is always text: give it in a "
        "second --configfile)"
    )
    for key, text, hint in [
        ("learning_rate", "1.0e5", "write 1.0e+5"),  # a dot, but no sign: text still
        ("epochs", "1e1", "write it as a number: 10"),
        ("learning_rate", "'0.1'", "a number given as text: quoted in YAML"),
    ]:
        config = load("config.yaml")
        config["ner"]["hparams"] = yaml.safe_load(f"{{{key}: {text}}}")
        with pytest.raises(cfg.ConfigError, match=re.escape(hint)):
            cfg.check(config, SCHEMA)
        fixed = hint.removeprefix("write it as a number: ").removeprefix("write ").split(";")[0]
        if fixed != hint:  # the advice is a number to YAML
            assert not isinstance(yaml.safe_load(fixed), str)


def test_pubmed_range_expands_to_numbered_files():
    config = {"pubmed": {"files": {"prefix": "pubmed25n", "first": 1, "last": 1274}}}
    names = cfg.pubmed_names(config)
    assert len(names) == 1274 and names[0] == "pubmed25n0001" and names[-1] == "pubmed25n1274"


def test_train_settings_merge_model_over_defaults():
    config = load("paper.yaml")
    tiny = cfg.train_settings(config, "TinyBioBERT")
    assert tiny["warmup_steps"] == 10000 and tiny["learning_rate"] == 5e-4
    assert cfg.train_settings(config, "BioMobileBERT")["max_steps"] == 200000
    assert config["train_defaults"]["warmup_steps"] == 5000  # the defaults themselves are untouched


def test_tokenizer_owners_and_table_rows():
    config = load("config.yaml")
    assert cfg.tokenizer_owner(config, "DistilBioBERT") == "teacher"
    assert cfg.tokenizer_owner(config, "BioMobileBERT") == "BioMobileBERT"
    assert cfg.table_models(config)[:2] == ["BioBERT", "DistilBioBERT"]


def ner_folder(root, name, splits):
    folder = root / name
    folder.mkdir(parents=True)
    for split in splits:  # train_dev.tsv: train.tsv's sentence, then a dev sentence
        (folder / f"{split}.tsv").write_text("Aspirin\tB\n\n" + ("Metformin\tB\n\n" if split == "train_dev" else ""))
    return root


@pytest.mark.parametrize(
    "config_name, datasets, expected",
    [
        ("paper.yaml", ["BC5CDR-chm"], "'BC5CDR-chm' is not in BioBERT's NER archive"),
        ("config.yaml", ["BC5CDR-chem"], "'BC5CDR-chem' is not a demo dataset"),
        ("config.yaml", ["demo-disease", "demo-desease"], "'demo-desease' is not a demo dataset"),
    ],
)
def test_dataset_names_are_checked_against_their_source(config_name, datasets, expected):
    config = load(config_name)
    config["ner"]["datasets"] = datasets
    with pytest.raises(cfg.ConfigError, match=f"^invalid config value at 'ner.datasets': {expected}"):
        cfg.check(config, SCHEMA)


def test_an_archive_is_never_extracted_over_a_users_dataset_folder(tmp_path):
    """With `archive_url`, fetch_ner writes <data_dir>/<name>/ (Snakemake first deletes its .tsv outputs there):
    a folder it did not write stops the run before any job, with the way out."""
    config = load("paper.yaml")
    config["ner"]["data_dir"] = str(ner_folder(tmp_path, "NCBI-disease", ["train", "test", "devel"]))
    config["ner"]["datasets"] = ["NCBI-disease", "BC5CDR-chem"]  # BC5CDR-chem: not there yet, fetched
    with pytest.raises(cfg.ConfigError, match=r"'NCBI-disease' .*NCBI-disease holds files fetch_ner did not write"):
        cfg.check(config, SCHEMA)
    assert sorted(p.name for p in (tmp_path / "NCBI-disease").iterdir()) == ["devel.tsv", "test.tsv", "train.tsv"]
    config["ner"]["archive_url"] = None  # the user's files, as they are
    config["ner"]["datasets"] = ["NCBI-disease"]
    cfg.check(config, SCHEMA)


def test_a_dataset_of_ones_own_goes_beside_the_archive_sets(tmp_path):
    config = load("paper.yaml")
    config["ner"]["data_dir"] = str(ner_folder(tmp_path, "MySet", ["train", "test", "devel"]))
    config["ner"]["datasets"] = ["NCBI-disease", "MySet"]  # NCBI-disease: fetched; MySet: the folder as it is
    cfg.check(config, SCHEMA)
    assert [cfg.dataset_source(config, name) for name in ["NCBI-disease", "MySet"]] == ["archive", "local"]
    config["ner"]["datasets"] = ["NCBI-disease", "MySett"]
    with pytest.raises(cfg.ConfigError, match=r"'MySett' is not in BioBERT's NER archive .* nor a folder of .*train"):
        cfg.check(config, SCHEMA)


def test_a_local_dataset_needs_the_files_the_loader_reads(tmp_path):
    config = load("config.yaml")
    config["demo"]["enabled"] = False
    config["ner"]["data_dir"] = str(ner_folder(tmp_path, "no-devel", ["train", "test", "train_dev"]))
    ner_folder(tmp_path, "devel-only", ["train", "test", "devel"])
    ner_folder(tmp_path, "no-test", ["train", "devel", "train_dev"])
    config["ner"]["datasets"] = ["no-devel", "devel-only"]
    cfg.check(config, SCHEMA)  # devel.tsv or train_dev.tsv, as for the CLI
    for name, missing in [("no-test", "no-test/test.tsv"), ("BC5CDR-chm", "BC5CDR-chm/train.tsv")]:
        config["ner"]["datasets"] = [name]
        with pytest.raises(cfg.ConfigError, match=f"'ner.datasets': '{name}' has no data .*{missing}: missing"):
            cfg.check(config, SCHEMA)


def test_a_bad_published_values_file_stops_the_run_before_any_job(tmp_path):
    """The table job, the run's last, found it (a traceback for some problems), after every fine-tuning."""
    config = load("config.yaml")
    config["ner"]["published"] = str(tmp_path / "mine.tsv")
    with pytest.raises(cfg.ConfigError, match=r"^invalid config value at 'ner.published': .*mine.tsv is no file"):
        cfg.check(config, SCHEMA, data_checks=True)
    (tmp_path / "mine.tsv").write_text("dataset\tmodel\tscoring\tmetric\tvalue\tsource\nd\tM\tpaper\tF1\t0.87\tus\n")
    with pytest.raises(cfg.ConfigError, match=r"'ner.published': .*mine.tsv: line 2: F1 0.87 is not a percentage"):
        cfg.check(config, SCHEMA, data_checks=True)


def test_a_local_dataset_with_bad_lines_stops_before_any_job(tmp_path):
    # the content, not only the files: else the first fine-tuning job failed on it, after any pre-training
    config = load("config.yaml")
    config["demo"]["enabled"] = False
    config["pubmed"]["local_dir"] = None  # downloaded: the demo's generated files are not there
    config["ner"]["data_dir"] = str(ner_folder(tmp_path, "mine", ["train", "test", "devel"]))
    config["ner"]["datasets"] = ["mine"]
    (tmp_path / "mine" / "test.tsv").write_bytes(b"Aspirin\tB\r\n\r\n")
    with pytest.raises(
        cfg.ConfigError,
        match=r"^invalid config value at 'ner.datasets': 'mine' has bad data \(.*mine/test.tsv: line 1: CRLF",
    ):
        cfg.check(config, SCHEMA, data_checks=True)
    cfg.check(config, SCHEMA)  # a job's re-check, a step by hand: no data read


def test_a_misspelt_architecture_key_is_named_in_one_line():
    config = load("config.yaml")
    config["models"]["TinyBioBERT"]["student"]["hidden_sise"] = 64
    with pytest.raises(cfg.ConfigError) as error:
        cfg.check(config, SCHEMA)
    assert str(error.value) == (
        "invalid config value at 'models.TinyBioBERT.student': 'hidden_sise' is not a bert "
        "config key (did you mean 'hidden_size'?)"
    )


def schema_default(*keys):
    """A default as written in the schema, read here without the code under test."""
    node = yaml.safe_load(SCHEMA.read_text())
    for key in keys:
        node = node["properties"][key]
    return node["default"]


def test_a_missing_optional_key_gets_its_schema_default():
    config = load("config.yaml")
    del config["ner"]["hparams"]["max_length"], config["model_stats"], config["pubmed"]["base_url"]
    cfg.check(config, SCHEMA)
    assert config["ner"]["hparams"]["max_length"] == schema_default("ner", "hparams", "max_length") == 512
    assert config["ner"]["hparams"]["learning_rate"] == 3e-3  # a given value stays
    assert config["model_stats"] == {"batch_size": 64, "min_seconds": 1.0}  # a missing section, filled within
    assert config["pubmed"]["base_url"] == schema_default("pubmed", "base_url")


def test_a_config_without_ner_hparams_gets_the_papers():
    config = load("config.yaml")
    del config["ner"]["hparams"]
    cfg.check(config, SCHEMA)
    hparams = yaml.safe_load(SCHEMA.read_text())["properties"]["ner"]["properties"]["hparams"]["properties"]
    # precision has no default: absent means auto, so that configs from before it rerun no job
    assert config["ner"]["hparams"] == {key: value["default"] for key, value in hparams.items() if key != "precision"}
    assert config["ner"]["hparams"]["learning_rate"] == 5e-5 and config["ner"]["hparams"]["epochs"] == 5


def test_a_python_caller_gets_the_same_hparams_as_the_config():
    from compact_biomed.ner.finetune import resolve_hparams

    config = load("config.yaml")
    cfg.check(config, SCHEMA)
    assert resolve_hparams({"learning_rate": 3e-3, "epochs": 4, "max_length": 128}) == config["ner"]["hparams"]
    with pytest.raises(cfg.ConfigError, match=r"^invalid config value at 'ner.hparams.epochs': 0 is less than"):
        resolve_hparams({"epochs": 0})


def schema_keys(node) -> set[str]:
    """Every property name anywhere in a JSON schema (its $defs included)."""
    if isinstance(node, list):
        return set().union(*map(schema_keys, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    own = set(node["properties"]) if isinstance(node.get("properties"), dict) else set()
    return own.union(*map(schema_keys, node.values()))


def test_config_readme_names_every_schema_key():
    """config/README.md documents every key: each property of the schema appears in one of its code spans."""
    readme = (REPO / "config" / "README.md").read_text()
    spans = " ".join(re.findall(r"`([^`]*)`", readme))
    keys = schema_keys(yaml.safe_load(SCHEMA.read_text()))
    assert len(keys) > 50  # the walk reached the nested blocks
    assert not sorted(key for key in keys if not re.search(rf"(?<!\w){re.escape(key)}(?!\w)", spans))
