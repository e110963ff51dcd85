"""Published models as rows: local folders and hub snapshots (from a Hugging Face cache laid out on disk, as the
hub client leaves it, so that no test touches the network), their checks and their provenance."""

import json
import re
import shutil

import pytest
import yaml
from conftest import REPO, TINY_TEXTS
from transformers import AutoModelForTokenClassification, AutoTokenizer

from compact_biomed import config as cfg
from compact_biomed import pretrained
from compact_biomed.base_models import SOURCE_FILE, random_init
from compact_biomed.io import OUTPUT_MARKER, InputError, read_json

SCHEMA = REPO / "config/schema.yaml"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def tiny_model(folder, model_type="bert", lowercase=False):
    configs = {
        "bert": {
            "num_hidden_layers": 2,
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
        },
        "distilbert": {"n_layers": 2, "dim": 32, "n_heads": 2, "hidden_dim": 64, "max_position_embeddings": 64},
        "mobilebert": {
            "num_hidden_layers": 2,
            "hidden_size": 32,
            "embedding_size": 16,
            "true_hidden_size": 16,
            "intra_bottleneck_size": 16,
            "intermediate_size": 32,
            "num_attention_heads": 2,
            "max_position_embeddings": 64,
        },
    }
    random_init(TINY_TEXTS, folder, model_type, lowercase=lowercase, vocab_size=200, seed=0, config=configs[model_type])
    for ours in (SOURCE_FILE, OUTPUT_MARKER):
        (folder / ours).unlink()  # a user's own folder has no record of ours
    return folder


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("user") / "my-bert")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, bert_dir):
    """A Hugging Face cache holding one snapshot of `org/tiny` at COMMIT, which `main` points to."""
    import huggingface_hub.constants

    repo = tmp_path / "hub" / "models--org--tiny"
    shutil.copytree(bert_dir, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    return repo


@pytest.mark.parametrize("model_type,lowercase", [("bert", False), ("distilbert", False), ("mobilebert", True)])
def test_local_folder_is_copied_with_its_weights_digest_and_fine_tunes(tmp_path, model_type, lowercase):
    user = tiny_model(tmp_path / "user", model_type, lowercase)
    (user / "notes.txt").write_text("not part of the model")
    out = tmp_path / "results/pretrained/Mine"
    provenance = pretrained.fetch({"path": str(user)}, out, key="models.Mine.pretrained")

    assert provenance == read_json(out / SOURCE_FILE)
    assert provenance["weights_sha256"] == pretrained.weights_digest(user)
    assert not (out / "notes.txt").exists()  # only what fine-tuning reads
    ours = {SOURCE_FILE, OUTPUT_MARKER}
    assert sorted(p.name for p in user.iterdir()) == sorted(
        [*(p.name for p in out.iterdir() if p.name not in ours), "notes.txt"]
    )  # the user's folder untouched
    model = AutoModelForTokenClassification.from_pretrained(out, num_labels=3)
    assert model.config.model_type == model_type
    assert AutoTokenizer.from_pretrained(out).tokenize("Aspirin")[0].islower() == lowercase


def test_hub_row_records_the_commit_its_short_revision_resolved_to(tmp_path, hub_cache):
    out = tmp_path / "results/pretrained/Tiny"
    provenance = pretrained.fetch({"hub_id": "org/tiny", "revision": COMMIT[:7]}, out, key="models.Tiny.pretrained")
    assert provenance == {"hub_id": "org/tiny", "revision": COMMIT[:7], "commit": COMMIT}
    assert pretrained.provenance_text(read_json(out / SOURCE_FILE)) == f"org/tiny @ {COMMIT}"
    main = pretrained.fetch({"hub_id": "org/tiny", "revision": "main"}, tmp_path / "main", key="k")
    assert main["commit"] == COMMIT  # a branch is recorded as the commit it pointed to


def test_a_repository_neither_cached_nor_reachable_is_one_line_naming_the_key(tmp_path, hub_cache):
    with pytest.raises(InputError, match=r"^models.Gone.pretrained: org/gone @ main: \w+Error: .+$"):
        pretrained.fetch({"hub_id": "org/gone", "revision": "main"}, tmp_path / "out", key="models.Gone.pretrained")
    assert not (tmp_path / "out").exists()


def bare_vocabulary(folder, bert_dir):
    """`bert_dir`'s model with its cased vocab.txt alone, as BioBERT v1.2 ships (AutoTokenizer lower-cases it)."""
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        shutil.copy(bert_dir / name, folder / name)
    vocab = (folder / "vocab.txt").read_text().splitlines()
    assert sum(t[:1].isupper() for t in vocab) / len(vocab) > 0.05  # the demo vocabulary is cased
    return folder


def test_cased_vocabulary_behind_a_lowercasing_tokenizer_is_refused_with_advice_that_works(tmp_path, bert_dir):
    folder = bare_vocabulary(tmp_path / "bare", bert_dir)
    advice = 'set "do_lower_case": false in the folder\'s tokenizer_config.json (create it if absent)'
    with pytest.raises(
        InputError, match=rf"^models.X.pretrained: {folder}: .*lower-cases text .*; {re.escape(advice)}$"
    ):
        pretrained.fetch({"path": str(folder)}, tmp_path / "out", key="models.X.pretrained")
    assert not (tmp_path / "out").exists()  # nothing half-made
    (folder / "tokenizer_config.json").write_text('{"do_lower_case": false}')
    pretrained.fetch({"path": str(folder)}, tmp_path / "out", key="models.X.pretrained")
    assert AutoTokenizer.from_pretrained(tmp_path / "out").tokenize("Aspirin") == ["Aspirin"]


def test_a_folder_whose_tokenizer_is_not_the_models_is_refused(tmp_path, bert_dir):
    """A tokenizer of 5 pieces beside a model of hundreds (what BertTokenizerFast(vocab_file=...) saves in
    transformers 5): every word [UNK], F1 0.00 without a word. One line instead, nothing fetched."""
    from transformers import BertTokenizerFast

    folder = tmp_path / "mismatched"
    folder.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(bert_dir / name, folder / name)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    BertTokenizerFast(vocab={t: i for i, t in enumerate(specials)}).save_pretrained(folder)
    assert AutoTokenizer.from_pretrained(folder).tokenize("aspirin") == ["[UNK]"]
    vocab_size = read_json(folder / "config.json")["vocab_size"]
    with pytest.raises(
        InputError,
        match=rf"^models.X.pretrained: {folder}: its tokenizer has 5 pieces for the model's {vocab_size:,}: not the tokenizer",
    ):
        pretrained.fetch({"path": str(folder)}, tmp_path / "out", key="models.X.pretrained")
    assert not (tmp_path / "out").exists()


def test_a_small_cased_vocabulary_behind_a_lowercasing_tokenizer_is_refused_too():
    """A cased biomedical vocabulary of 2,000 pieces held under 5% capitalised ones (a user's, 4.65%): a lower-cased
    vocabulary holds none, so any real share of them is a cased one."""
    from transformers import BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    lower = [f"w{i}" for i in range(970)]
    cased = [f"Word{i}" for i in range(30)]  # 3% capitalised
    uncased = BertTokenizer(vocab={t: i for i, t in enumerate(specials + lower)}, do_lower_case=True)
    assert pretrained.case_problem(uncased, "the advice") is None
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(specials + lower + cased)}, do_lower_case=True)
    assert pretrained.case_problem(tokenizer, "the advice").startswith("its tokenizer lower-cases text but 3% of")


def test_a_hub_row_with_a_lowercasing_tokenizer_is_told_to_take_another(tmp_path, hub_cache, bert_dir):
    snapshot = hub_cache / "snapshots" / COMMIT
    shutil.rmtree(snapshot)
    bare_vocabulary(snapshot, bert_dir)
    with pytest.raises(InputError, match=r"^k: org/tiny: .*lower-cases text .*; set tokenizer_hub_id to the cased"):
        pretrained.fetch({"hub_id": "org/tiny", "revision": "main"}, tmp_path / "out", key="k")


def test_missing_model_type_is_taken_from_the_architecture(tmp_path, bert_dir):
    old = tmp_path / "old"
    shutil.copytree(bert_dir, old)
    config = json.loads((old / "config.json").read_text())
    del config["model_type"]
    (old / "config.json").write_text(json.dumps({**config, "architectures": ["BertForPreTraining"]}))
    provenance = pretrained.fetch({"path": str(old)}, tmp_path / "out", key="k")
    assert provenance["model_type_added"] == "bert"
    assert json.loads((tmp_path / "out/config.json").read_text())["model_type"] == "bert"  # in our copy only
    assert "model_type" not in json.loads((old / "config.json").read_text())


def released_style(rows: dict) -> dict:
    config = yaml.safe_load((REPO / "config/released.yaml").read_text())
    config["models"] = rows
    return config


@pytest.mark.parametrize(
    "row,key,problem",
    [
        (
            {"pretrained": {"hub_id": "nlpie/tiny-biobert"}},
            "models.X.pretrained",
            "'hub_id' needs 'revision' beside it \\(branch, tag, or commit",
        ),
        (
            {"pretrained": {"hub_id": "a/b", "revision": "main"}, "recipe": "distilbiobert"},
            "models.X.recipe",
            "a pretrained row is fine-tuned as it is",
        ),
        ({"pretrained": {"hub_id": "a/b", "revision": "main", "path": "x"}}, "models.X.pretrained", "exactly one"),
        (  # a folder's tokenizer is its own: the option was ignored
            {"pretrained": {"path": "x", "tokenizer_hub_id": "a/b"}},
            "models.X.pretrained",
            "a local folder .'path'. takes no tokenizer_hub_id",
        ),
        ({"pretrained": {"path": "/nonexistent/model"}}, "models.X.pretrained.path", "no such folder"),
        ({}, "models.X", r"give 'recipe' \(train it\) or 'pretrained'"),
    ],
)
def test_bad_rows_stop_with_the_key(row, key, problem):
    with pytest.raises(cfg.ConfigError, match=rf"at '{key}'.*{problem}"):
        cfg.check(released_style({"X": row}), SCHEMA)


def test_a_home_relative_path_is_the_users_folder(tmp_path, bert_dir, monkeypatch):
    # "~/models/x", as users write it; Snakemake and transformers take the ~ as a folder's name
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(bert_dir, tmp_path / "enc")
    config = released_style({"Mine": {"pretrained": {"path": "~/enc"}}})
    config["ner"]["data_dir"] = "~/ner"
    cfg.check(config, SCHEMA)
    assert config["models"]["Mine"]["pretrained"]["path"] == str(tmp_path / "enc")
    assert config["ner"]["data_dir"] == str(tmp_path / "ner")


def test_a_folder_that_is_not_an_encoder_names_the_key(tmp_path, bert_dir):
    decoder = tmp_path / "gpt"
    shutil.copytree(bert_dir, decoder)
    (decoder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    no_tokenizer = tmp_path / "weights-only"
    shutil.copytree(bert_dir, no_tokenizer)
    for name in ("vocab.txt", "tokenizer.json"):
        (no_tokenizer / name).unlink(missing_ok=True)
    for folder, problem in ((decoder, "model_type 'gpt2' is not a masked-LM encoder"), (no_tokenizer, "no tokenizer")):
        with pytest.raises(cfg.ConfigError, match=rf"'models.X.pretrained.path': {folder}: {problem}"):
            cfg.check(released_style({"X": {"pretrained": {"path": str(folder)}}}), SCHEMA)


def test_a_truncated_weights_file_names_the_key_and_the_file(tmp_path, bert_dir):
    """A copy cut short (a full disk, an interrupted transfer): one line at the config check, not a traceback from
    safetensors when the fine-tuning loads it."""
    cut = tmp_path / "cut"
    shutil.copytree(bert_dir, cut)
    weights = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(cfg.ConfigError, match=rf"'models.X.pretrained.path': {cut}: model.safetensors is cut short"):
        cfg.check(released_style({"X": {"pretrained": {"path": str(cut)}}}), SCHEMA)


def test_a_deberta_v2_folder_whose_tokenizer_is_spm_model_is_an_encoder(tmp_path, bert_dir):
    """DeBERTa-v2/v3 checkpoints ship their SentencePiece vocabulary as spm.model, which their tokenizer loads."""
    deberta = tmp_path / "deberta"
    deberta.mkdir()
    shutil.copy(bert_dir / "model.safetensors", deberta)
    (deberta / "config.json").write_text(json.dumps({"model_type": "deberta-v2"}))
    (deberta / "spm.model").write_bytes(b"a SentencePiece model")
    assert pretrained.encoder_problem(deberta) is None
    (deberta / "spm.model").unlink()
    assert pretrained.encoder_problem(deberta).startswith("no tokenizer")


def test_training_sections_are_needed_only_when_a_row_is_trained(bert_dir):
    cfg.check(released_style({"Mine": {"pretrained": {"path": str(bert_dir)}}}), SCHEMA)  # no teacher, no pubmed
    trained = released_style({"Mine": {"recipe": "distilbiobert"}})
    with pytest.raises(cfg.ConfigError, match=r"at 'pubmed': required to train models.Mine"):
        cfg.check(trained, SCHEMA)


def test_cli_fetches_a_row_and_names_a_missing_one(tmp_path, bert_dir, capsys):
    from compact_biomed.cli import main

    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump(released_style({"Mine": {"pretrained": {"path": str(bert_dir)}}})))
    assert main(["fetch-pretrained", "--config", str(config), "Mine", "--out", str(tmp_path / "out")]) == 0
    assert read_json(tmp_path / "out" / SOURCE_FILE)["path"] == str(bert_dir.resolve())
    assert main(["fetch-pretrained", "--config", str(config), "Other", "--out", str(tmp_path / "other")]) == 1
    assert "'models.Other': no such pretrained row" in capsys.readouterr().err
