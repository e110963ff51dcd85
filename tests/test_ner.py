"""NER: file validation, dev split, sub-token alignment, both scorings, windows, and fine-tuning end to end."""

import json
import random
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_roberta, shared_path
from torch.utils._python_dispatch import TorchDispatchMode

from compact_biomed.config import ConfigError
from compact_biomed.io import OUTPUT_MARKER, InputError, read_json
from compact_biomed.ner import SCORINGS
from compact_biomed.ner import encode as ner_encode
from compact_biomed.ner import finetune as ner_finetune
from compact_biomed.ner import model as ner_model
from compact_biomed.ner import scoring as ner_scoring
from compact_biomed.ner import train as ner_train
from compact_biomed.ner.data import load_dataset_dir, read_split

torch.set_num_threads(1)

TAG_IDS = {"B": 0, "I": 1, "O": 2}


def write_split(path: Path, sentences) -> Path:
    lines = []
    for tokens, tags in sentences:
        lines += [f"{token}\t{tag}" for token, tag in zip(tokens, tags)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_dataset(folder: Path, train, dev, test, train_dev: bool = True, devel: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    write_split(folder / "train.tsv", train)
    write_split(folder / "test.tsv", test)
    if devel:
        write_split(folder / "devel.tsv", dev)
    if train_dev:
        write_split(folder / "train_dev.tsv", train + dev)
    return folder


# --- a small learnable dataset: drugs are B, "X cancer"/"X failure" diseases are B I ------------------

DRUGS = ["Aspirin", "Cisplatin", "Metformin", "lisinopril"]
OTHER = ["reduces", "fever", "in", "patients", "with", "was", "observed", "blood", "glucose", "the", "and"]
DISEASES = [["breast", "cancer"], ["ovarian", "cancer"], ["heart", "failure"]]


def toy_sentence(rng: random.Random):
    tokens, tags = [], []
    for _ in range(rng.randint(4, 9)):
        roll = rng.random()
        if roll < 0.2:
            tokens += [rng.choice(DRUGS)]
            tags += ["B"]
        elif roll < 0.3:
            tokens += rng.choice(DISEASES)
            tags += ["B", "I"]
        else:
            tokens += [rng.choice(OTHER)]
            tags += ["O"]
    return tokens + ["."], tags + ["O"]


@pytest.fixture
def toy_data_dir(tmp_path):
    rng = random.Random(0)
    train = [toy_sentence(rng) for _ in range(64)]
    dev = [toy_sentence(rng) for _ in range(12)]
    test = [toy_sentence(rng) for _ in range(12)]
    # A zero-width space gives no sub-token: it must not shift the labels after it.
    test[0] = (["Aspirin", "\u200b", "reduces", "fever", "."], ["B", "O", "O", "O", "O"])
    # One sentence longer than the window used in the test, so it is split and re-joined.
    test[1] = (test[1][0] * 4, test[1][1] * 4)
    # Sentences with no sub-token at all: skipped in training (no NaN loss), all "O" when predicted.
    train[5] = test[2] = (["\u200b", "\u200b"], ["O", "O"])
    return write_dataset(tmp_path / "toy", train, dev, test)


# --- read_split validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content, problem",
    [
        ("Aspirin\tB\nreduces\tO\tX\n", "line 2: expected 2 tab-separated columns"),
        ("Aspirin B\n", "line 1: expected 2 tab-separated columns (token, tag), got 1 (separated by spaces? a tab"),
        ("Aspirin\tB\n\n\tO\n", "line 3: empty token"),
        ("Aspirin\tB\r\nfever\tO\r\n", "line 1: CRLF line ending"),
        ("Aspirin\tB\nfever\tX\n", "line 2: invalid tag 'X'"),
        ("Aspirin\tB-\n", "line 1: invalid tag 'B-'"),
        ("Aspirin\tb\n", "line 1: invalid tag 'b'"),
        ("", "empty file"),
        ("\n\n", "empty file"),
    ],
)
def test_read_split_rejects_bad_files_naming_file_and_line(tmp_path, content, problem):
    path = tmp_path / "train.tsv"
    path.write_text(content, encoding="utf-8", newline="")
    with pytest.raises(InputError) as caught:
        read_split(path)
    message = str(caught.value)
    assert problem in message and str(path) in message and "\n" not in message


def test_read_split_accepts_typed_tags_extra_blank_lines_and_no_final_newline(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_text("Aspirin\tB-Chemical\n\n\n\nbreast\tB-Disease\ncancer\tI-Disease\n.\tO", encoding="utf-8")
    assert read_split(path) == [
        (["Aspirin"], ["B-Chemical"]),
        (["breast", "cancer", "."], ["B-Disease", "I-Disease", "O"]),
    ]


def test_conll_document_separators_are_not_sentences(tmp_path):
    # CoNLL's "-DOCSTART-" line separates documents (BioBERT's reader, as transformers' old run_ner, skips it); read
    # as a sentence, it was trained on and predicted as a one-token sentence
    path = tmp_path / "x.tsv"
    path.write_text("-DOCSTART-\tO\n\nAspirin\tB\n\n-DOCSTART-\tO\nbreast\tB\ncancer\tI\n", encoding="utf-8")
    assert read_split(path) == [(["Aspirin"], ["B"]), (["breast", "cancer"], ["B", "I"])]


# --- load_dataset_dir ----------------------------------------------------------------------------------

TRAIN = [(["Aspirin", "helps"], ["B", "O"]), (["breast", "cancer"], ["B", "I"])]
DEV = [(["Cisplatin", "hurts"], ["B", "O"])]
TEST = [(["heart", "failure"], ["B", "I"])]


def test_dev_split_is_tail_of_train_dev_and_labels_come_from_train(tmp_path):
    folder = write_dataset(tmp_path / "d", TRAIN, DEV, TEST, devel=False)
    data = load_dataset_dir(folder)
    assert data["dev"] == DEV and data["train"] == TRAIN and data["test"] == TEST
    assert data["labels"] == ["B", "I", "O"]


def test_dev_split_falls_back_to_devel_tsv(tmp_path):
    folder = write_dataset(tmp_path / "d", TRAIN, DEV, TEST, train_dev=False)
    assert load_dataset_dir(folder)["dev"] == DEV


def test_missing_split_file_is_an_input_error(tmp_path):
    folder = write_dataset(tmp_path / "d", TRAIN, DEV, TEST)
    (folder / "test.tsv").unlink()
    with pytest.raises(InputError, match="test.tsv: missing split file"):
        load_dataset_dir(folder)


def test_tag_unseen_in_train_is_an_input_error_naming_tag_and_file(tmp_path):
    train = [(["Aspirin", "helps"], ["B", "O"])]
    folder = write_dataset(tmp_path / "d", train, DEV, TEST)  # TEST has I, train has not
    with pytest.raises(InputError, match=r"test.tsv: sentence 1: tag 'I' does not occur in train.tsv"):
        load_dataset_dir(folder)
    write_split(folder / "train_dev.tsv", train + TEST)  # numbered within train_dev.tsv
    with pytest.raises(InputError, match=r"train_dev.tsv: sentence 2: tag 'I' does not occur"):
        load_dataset_dir(folder)


def test_train_dev_that_does_not_start_with_train_is_an_input_error(tmp_path):
    folder = write_dataset(tmp_path / "d", TRAIN, DEV, TEST)
    write_split(folder / "train_dev.tsv", DEV + TRAIN)
    with pytest.raises(InputError, match="train_dev.tsv: does not start with"):
        load_dataset_dir(folder)


def test_a_utf8_bom_at_the_start_of_a_real_split_is_accepted(tmp_path):
    real = shared_path("ner", "BC5CDR-chem")
    copy = tmp_path / "BC5CDR-chem"
    copy.mkdir()
    for split in ("train", "devel", "test", "train_dev"):
        data = (real / f"{split}.tsv").read_bytes()
        (copy / f"{split}.tsv").write_bytes(b"\xef\xbb\xbf" + data if split in ("train", "test") else data)
    assert load_dataset_dir(copy) == load_dataset_dir(real)


# --- alignment -----------------------------------------------------------------------------------------

# [CLS] Cis ##pla ##tin <word 1 has no pieces> fever [SEP]; word tags B O I (an I without B).
WORD_IDS = [None, 0, 0, 0, 2, None]
WORD_TAGS = ["B", "O", "I"]


def test_align_labels_every_piece_repeats_the_word_tag_on_every_piece():
    labels = ner_encode.align_labels(WORD_IDS, [TAG_IDS[t] for t in WORD_TAGS], "every_piece")
    assert labels.tolist() == [-100, TAG_IDS["B"], TAG_IDS["B"], TAG_IDS["B"], TAG_IDS["I"], -100]


def test_align_labels_first_piece_labels_only_first_pieces():
    labels = ner_encode.align_labels(WORD_IDS, [TAG_IDS[t] for t in WORD_TAGS], "first_piece")
    assert labels.tolist() == [-100, TAG_IDS["B"], -100, -100, TAG_IDS["I"], -100]


def test_align_labels_rejects_unknown_mode():
    with pytest.raises(ValueError, match="unknown label mode 'paper'"):  # a scoring, not a label mode
        ner_encode.align_labels(WORD_IDS, [0, 1, 2], "paper")


def test_word_without_pieces_does_not_shift_labels_with_the_real_tokenizer(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    words, tags = ["Aspirin", "\u200b", "reduces", "fever"], ["B", "I", "O", "I"]
    word_ids = tokenizer(words, is_split_into_words=True).word_ids()
    assert 1 not in word_ids and 3 in word_ids  # the zero-width space vanished
    labels = ner_encode.align_labels(word_ids, [TAG_IDS[t] for t in tags], "every_piece")
    fever = [i for i, w in enumerate(word_ids) if w == 3]
    assert all(labels[i] == TAG_IDS["I"] for i in fever)  # fever keeps its own tag, not "O" of reduces


def test_a_byte_level_bpe_encoder_gets_the_pieces_of_running_text(tmp_path, toy_data_dir):
    # RoBERTa's tokenizer reads a pre-split word as text with no space before it, i.e. pieces it rarely saw in
    # pre-training ("in", "duced" for " induced"); transformers 5 no longer refuses it, so the words must get a space.
    from transformers import AutoTokenizer

    model_dir = make_tiny_roberta(tmp_path / "roberta")
    words = ["Cisplatin", "induced", "nephrotoxicity", "in", "patients"]

    def pieces(tokenizer):
        split = ner_encode.encode_split(
            tokenizer, [(words, ["O"] * len(words))], {"O": 0}, 64, "every_piece", "test.tsv"
        )
        return tokenizer.convert_ids_to_tokens(split.input_ids[0].tolist())[1:-1]

    plain = AutoTokenizer.from_pretrained(model_dir)  # the tokenizer as saved
    running = plain.tokenize(" " + " ".join(words))  # the words inside a sentence
    assert pieces(ner_model.load_tokenizer(model_dir)) == running
    assert pieces(plain) != running
    # The generic class (ModernBERT's, a folder naming PreTrainedTokenizerFast) only stores add_prefix_space
    generic = tmp_path / "generic"
    shutil.copytree(model_dir, generic)
    config = json.loads((generic / "tokenizer_config.json").read_text())
    (generic / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "PreTrainedTokenizerFast"}))
    tokenizer = ner_model.load_tokenizer(generic)
    assert type(tokenizer).__name__ == "TokenizersBackend" and pieces(tokenizer) == running

    metrics = ner_finetune.finetune(model_dir, toy_data_dir, tmp_path / "run", seed=1, hparams={**QUICK, "epochs": 1})
    assert 0 <= metrics["test"]["word"]["f1"] <= 1


def test_words_from_pieces_round_trip_and_pieceless_word_becomes_O():
    piece_tags = [None, "B", "I", "I", "I", None]  # as predicted per sub-token (specials ignored)
    words = ner_encode.words_from_pieces(ner_encode.word_id_array(WORD_IDS), piece_tags, n_words=3)
    assert words == ["B", "O", "I"]
    # first-piece labels -> words gives back the word tags, except the word with no pieces
    first_piece = ner_encode.align_labels(WORD_IDS, [TAG_IDS[t] for t in ["I", "B", "B"]], "first_piece")
    names = {v: k for k, v in TAG_IDS.items()}
    recovered = ner_encode.words_from_pieces(ner_encode.word_id_array(WORD_IDS), [names.get(x) for x in first_piece], 3)
    assert recovered == ["I", "O", "B"]


# --- scoring -------------------------------------------------------------------------------------------


def test_entity_scores_on_a_hand_computed_case():
    # gold chunks: B@0, B@1, I@3 (an I after O starts a chunk) = 3; predicted: B-I@0-1, I@3 = 2; correct: I@3.
    # Strict IOB2: gold B@0, B@1 (the lone I is no entity); predicted B-I@0-1; none correct.
    scores = ner_scoring.entity_scores([["B", "B", "O", "I"]], [["B", "I", "O", "I"]])
    assert scores == pytest.approx({"precision": 1 / 2, "recall": 1 / 3, "f1": 0.4, "strict_f1": 0.0})


def test_paper_scoring_counts_every_piece_of_a_B_word_as_an_entity():
    # "Cisplatin" (B) = 3 pieces, predicted B on its first piece only.
    gold_pieces, pred_pieces = [["B", "B", "B", "O"]], [["B", "O", "O", "O"]]
    assert ner_scoring.entity_scores(gold_pieces, pred_pieces) == pytest.approx(
        {"precision": 1.0, "recall": 1 / 3, "f1": 0.5, "strict_f1": 0.5}
    )
    word_ids = np.array([0, 0, 0, 1])
    assert ner_encode.words_from_pieces(word_ids, pred_pieces[0], 2) == ["B", "O"]
    assert ner_scoring.entity_scores([["B", "O"]], [["B", "O"]])["f1"] == 1.0


def test_scoring_with_no_entities_predicted_is_zero_not_an_error():
    assert ner_scoring.entity_scores([["B", "O"]], [["O", "O"]]) == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "strict_f1": 0.0,
    }


def test_scoring_rejects_misaligned_sequences():
    with pytest.raises(ValueError):
        ner_scoring.entity_scores([["B", "O"]], [["O"]])


# --- windows -------------------------------------------------------------------------------------------


def test_window_word_ranges_packs_greedily_and_keeps_pieceless_words():
    assert ner_encode.window_word_ranges([3, 3, 3], 5) == [(0, 1), (1, 2), (2, 3)]
    assert ner_encode.window_word_ranges([2, 0, 2, 2], 4) == [(0, 3), (3, 4)]
    with pytest.raises(ValueError):
        ner_encode.window_word_ranges([1, 6], 5)


def test_long_sentences_are_split_at_word_boundaries_and_rejoined(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    long = (["Cisplatinxyz", "\u200b", "reduces", "fever", "in", "patients"] * 3, ["B", "O", "O", "I", "O", "O"] * 3)
    sentences = [(["Aspirin", "."], ["B", "O"]), long]
    whole = ner_encode.encode_split(tokenizer, sentences, TAG_IDS, 512, "every_piece", "x.tsv")
    windows = ner_encode.encode_split(tokenizer, sentences, TAG_IDS, 8, "every_piece", "x.tsv")
    assert whole.split_sentences == 0 and windows.split_sentences == 1
    assert all(len(ids) <= 8 for ids in windows.input_ids)
    assert windows.window_sentence[0] == 0 and (windows.window_sentence[1:] == 1).all()
    for (ids_a, labels_a), (ids_b, labels_b) in zip(
        ner_encode.sentence_pieces(whole, whole.labels), ner_encode.sentence_pieces(windows, windows.labels)
    ):
        assert ids_a.tolist() == ids_b.tolist() and labels_a.tolist() == labels_b.tolist()
    with pytest.raises(InputError, match=r"x.tsv: sentence 2: word 1 \('Cisplatinxyz'\) alone has 4 sub-tokens, more"):
        ner_encode.encode_split(tokenizer, sentences, TAG_IDS, 4, "every_piece", "x.tsv")


def test_a_dev_sentence_that_cannot_be_cut_is_named_by_its_line_in_train_dev(tiny_bert_dir, toy_data_dir, tmp_path):
    """The dev split is the tail of train_dev.tsv, after its 64 train sentences: its third is that file's 67th."""
    train = read_split(toy_data_dir / "train.tsv")
    dev = read_split(toy_data_dir / "devel.tsv")
    dev[2] = (["Cisplatinxyzxyzxyz", "."], ["B", "O"])  # 10 pieces: more than a window of 8 holds
    write_dataset(toy_data_dir, train, dev, read_split(toy_data_dir / "test.tsv"))
    with pytest.raises(InputError, match=r"train_dev.tsv: sentence 67: word 1 .* raise ner.hparams.max_length"):
        ner_finetune.finetune(tiny_bert_dir, toy_data_dir, tmp_path / "out", seed=1, hparams={**QUICK, "max_length": 8})
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("saved_labels", [7, 3])
def test_a_folder_with_its_own_ner_head_gets_a_new_head_and_keeps_its_encoder(tmp_path, tiny_bert_dir, saved_labels):
    # e.g. an encoder someone fine-tuned for another NER task: its head, of another size or not, is not ours
    from transformers import AutoModelForTokenClassification

    folder = tmp_path / "ner-model"
    trained = AutoModelForTokenClassification.from_pretrained(tiny_bert_dir, num_labels=saved_labels)
    torch.nn.init.ones_(trained.classifier.bias)  # a bias no newly drawn head has (zeros)
    trained.save_pretrained(folder)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (tiny_bert_dir / name).exists():
            shutil.copy(tiny_bert_dir / name, folder / name)
    saved = AutoModelForTokenClassification.from_pretrained(folder).state_dict()
    labels = {0: "O", 1: "B", 2: "I"}
    model = ner_model.load_token_classifier(folder, labels)
    fresh = ner_model.load_token_classifier(tiny_bert_dir, labels)  # the masked LM: its head is drawn anew
    for key, value in model.state_dict().items():
        if key.startswith("classifier."):
            assert value.shape[0] == 3 and not (value.shape == saved[key].shape and torch.equal(value, saved[key]))
            assert value.std().item() == pytest.approx(fresh.state_dict()[key].std().item(), rel=0.5, abs=1e-6)
        else:
            assert torch.equal(value, saved[key]), key


def test_encoder_weights_of_other_shapes_than_the_config_are_refused(tmp_path, tiny_bert_dir):
    # ignore_mismatched_sizes, there for a saved head, would draw them anew: an encoder fine-tuned from random weights
    folder = tmp_path / "edited"
    shutil.copytree(tiny_bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "vocab_size": config["vocab_size"] + 5}))
    with pytest.raises(
        InputError, match=r"edited: weights whose shapes differ from its config.json's, e.g. \[.*word_emb"
    ):
        ner_model.load_token_classifier(folder, {0: "O"})


def test_the_window_fits_the_positions_of_bert_and_of_roberta_like_models(tmp_path, tiny_bert_dir):
    # RoBERTa's position ids start after its padding id: its 130 position embeddings hold 128 tokens, BERT's 128 too
    roberta_dir = make_tiny_roberta(tmp_path / "roberta")
    for model_dir, positions in ((tiny_bert_dir, 128), (roberta_dir, 130)):
        model = ner_model.load_token_classifier(model_dir, {0: "O"})
        assert model.config.max_position_embeddings == positions
        window = ner_model.window_length(model, 512)
        assert window == 128
        words = ["in"] * 300  # one piece each: the windows are full
        split = ner_encode.encode_split(
            ner_model.load_tokenizer(model_dir), [(words, ["O"] * 300)], {"O": 0}, window, "first_piece", "x"
        )
        assert max(map(len, split.input_ids)) == window
        model(input_ids=torch.as_tensor(split.input_ids[0])[None])  # a full window runs


# --- fine-tuning ---------------------------------------------------------------------------------------

QUICK = {"learning_rate": 5e-3, "epochs": 4, "batch_size": 8, "max_length": 16, "threads": 1}


def test_finetune_writes_metrics_and_predictions(tiny_bert_dir, toy_data_dir, tmp_path):
    out = tmp_path / "run"
    metrics = ner_finetune.finetune(tiny_bert_dir, toy_data_dir, out, seed=3, hparams=QUICK)
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "metrics.json", "predictions.tsv"]
    assert read_json(out / "metrics.json") == metrics
    assert set(metrics) == {
        "seed",
        "epochs",
        "model_dir",
        "data_dir",
        "label_mode_train",
        "hparams",
        "max_length",
        "train_sentences",
        "cut_splits",
        "split_sentences",
        "wall_seconds",
        "train_samples_per_second",
        "epoch_samples_per_second",
        "dev",
        "test",
    }
    assert metrics["seed"] == 3 and metrics["epochs"] == 4 and metrics["train_sentences"] == 64
    assert metrics["cut_splits"] == []  # every sentence of every split
    # every setting as trained, the schema's defaults filled in and auto resolved
    assert metrics["hparams"] == {
        **ner_finetune.resolve_hparams(QUICK),
        "precision": "bf16" if ner_train.bf16() else "fp32",
    }
    assert metrics["max_length"] == 16
    assert len(metrics["epoch_samples_per_second"]) == 4
    assert metrics["split_sentences"]["test"] >= 1  # the 4x sentence does not fit 16 sub-tokens
    for split in ("dev", "test"):
        assert tuple(metrics[split]) == SCORINGS
        for mode in SCORINGS:
            assert set(metrics[split][mode]) == {"precision", "recall", "f1", "strict_f1"}
            assert 0.0 <= metrics[split][mode]["f1"] <= 1.0
    assert metrics["test"]["word"]["f1"] > 0.5  # the toy task is learnable

    test = read_split(toy_data_dir / "test.tsv")
    blocks = (out / "predictions.tsv").read_text(encoding="utf-8").rstrip("\n").split("\n\n")
    assert len(blocks) == len(test)
    rows = [[line.split("\t") for line in block.split("\n")] for block in blocks]
    assert [[r[0] for r in rows_] for rows_ in rows] == [tokens for tokens, _ in test]
    assert [[r[1] for r in rows_] for rows_ in rows] == [tags for _, tags in test]
    assert rows[0][1] == ["\u200b", "O", "O"]  # the pieceless word is predicted O
    assert rows[2] == [["\u200b", "O", "O"]] * 2


def test_finetune_is_deterministic_per_seed_and_first_piece_training_runs(tiny_bert_dir, toy_data_dir, tmp_path):
    hp = {**QUICK, "epochs": 1, "label_mode_train": "first_piece", "max_train_sentences": 20, "max_eval_sentences": 5}
    first = ner_finetune.finetune(tiny_bert_dir, toy_data_dir, tmp_path / "a", seed=7, hparams=hp)
    second = ner_finetune.finetune(tiny_bert_dir, toy_data_dir, tmp_path / "b", seed=7, hparams=hp)
    assert first["label_mode_train"] == "first_piece" and first["train_sentences"] == 20
    assert first["cut_splits"] == ["train", "dev", "test"]  # 20 of 64 training sentences, 5 of each other split
    assert first["test"] == second["test"] and first["dev"] == second["dev"]
    assert (tmp_path / "a" / "predictions.tsv").read_bytes() == (tmp_path / "b" / "predictions.tsv").read_bytes()


def test_finetune_logs_progress_and_writes_nothing_outside_its_output(
    tiny_bert_dir, toy_data_dir, tmp_path, monkeypatch, capsys
):
    """Loss every `logging_steps` steps and each epoch's rate reach the job's log; the Trainer's own output
    folder is a scratch folder of ours, so the working directory stays untouched."""
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    hp = {**QUICK, "epochs": 2, "logging_steps": 3, "max_train_sentences": 48, "max_eval_sentences": 4}
    ner_finetune.finetune(tiny_bert_dir, toy_data_dir, tmp_path / "out", seed=1, hparams=hp)
    lines = capsys.readouterr().out.splitlines()
    steps = [line for line in lines if line.startswith("step ")]
    assert [line.split()[1] for line in steps] == ["3/12", "6/12", "9/12", "12/12"]  # 48 windows / 8 x 2 epochs
    assert all(" loss " in line and line.endswith("samples/s") for line in steps)
    assert [line.split(":")[0] for line in lines if line.startswith("epoch ")] == ["epoch 1", "epoch 2"]
    assert list(workdir.iterdir()) == []


def test_finetune_length_grouping_is_an_option(tiny_bert_dir, toy_data_dir, tmp_path, capsys):
    hp = {**QUICK, "epochs": 1, "group_by_length": True, "pad_to_multiple_of": 8, "max_eval_sentences": 4}
    metrics = ner_finetune.finetune(tiny_bert_dir, toy_data_dir, tmp_path / "out", seed=1, hparams=hp)
    assert "length-grouped batches padded to a multiple of 8" in capsys.readouterr().out
    assert 0.0 <= metrics["test"]["word"]["f1"] <= 1.0


def test_finetune_rejects_unknown_hparams_and_leaves_no_output(tiny_bert_dir, toy_data_dir, tmp_path):
    with pytest.raises(ValueError, match="learning_rat"):
        ner_finetune.finetune(tiny_bert_dir, toy_data_dir, tmp_path / "out", seed=1, hparams={"learning_rat": 1e-3})
    with pytest.raises(ConfigError, match="precision bf16 needs a CUDA GPU"):  # checked before any work
        ner_finetune.finetune(tiny_bert_dir, toy_data_dir, tmp_path / "out", seed=1, hparams={"precision": "bf16"})
    (toy_data_dir / "train.tsv").write_text("", encoding="utf-8")
    with pytest.raises(InputError, match="train.tsv: empty file"):
        ner_finetune.finetune(tiny_bert_dir, toy_data_dir, tmp_path / "out", seed=1, hparams=QUICK)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_finetune_on_real_bc5cdr_chem_reaches_nontrivial_f1(tmp_path):
    """A 2-layer random BERT with a WordPiece vocabulary trained on the training text learns real NER."""
    from compact_biomed.base_models import random_init

    data_dir = shared_path("ner", "BC5CDR-chem")
    train = read_split(data_dir / "train.tsv")[:1500]
    model_dir = tmp_path / "model"
    random_init(
        [" ".join(tokens) for tokens, _ in train],
        model_dir,
        "bert",
        lowercase=False,
        vocab_size=4000,
        seed=0,
        config={
            "num_hidden_layers": 2,
            "hidden_size": 128,
            "num_attention_heads": 4,
            "intermediate_size": 256,
            "max_position_embeddings": 128,
        },
    )
    started = time.perf_counter()
    metrics = ner_finetune.finetune(
        model_dir,
        data_dir,
        tmp_path / "run",
        seed=1,
        hparams={
            "learning_rate": 1e-3,
            "epochs": 4,
            "warmup_ratio": 0.1,
            "max_length": 128,
            "max_train_sentences": 1500,
            "max_eval_sentences": 300,
            "threads": 1,
        },
    )
    print(f"\nBC5CDR-chem subset: {time.perf_counter() - started:.1f} s, test {metrics['test']}")
    assert metrics["train_sentences"] == 1500
    assert metrics["test"]["word"]["f1"] > 0.3
    assert metrics["test"]["paper"]["f1"] > 0.2


# --- today's hand-written scorer, kept here only as the reference the seqeval scoring must equal ------------


def reference_chunks(sentences: list[list[str]]) -> set[tuple[str, int, int]]:
    """Entity chunks (type, first, last) as conlleval finds them: `I` without `B` opens a chunk, a type change
    closes one; sentences are joined with an `O`. (ner.py's scorer before it moved to seqeval.)"""
    tags = [tag for sentence in sentences for tag in [*sentence, "O"]]
    chunks, begin, prev_tag, prev_type = set(), 0, "O", ""
    for i, label in enumerate([*tags, "O"]):
        tag, kind = label[0], label[1:].split("-", maxsplit=1)[-1] or "_"
        if prev_tag in "ES" or (prev_tag in "BI" and tag in "BSO") or (prev_tag not in "O." and prev_type != kind):
            chunks.add((prev_type, begin, i - 1))
        if tag in "BS" or (prev_tag in "ESO" and tag in "EI") or (tag not in "O." and prev_type != kind):
            begin = i
        prev_tag, prev_type = tag, kind
    return chunks


def reference_scores(gold: list[list[str]], pred: list[list[str]]) -> dict:
    true, predicted = reference_chunks(gold), reference_chunks(pred)
    hits = len(true & predicted)
    precision = hits / len(predicted) if predicted else 0.0
    recall = hits / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def perturbed(gold: list[list[str]], rng: random.Random, labels: list[str], rate: float) -> list[list[str]]:
    return [[rng.choice(labels) if rng.random() < rate else tag for tag in tags] for tags in gold]


@pytest.mark.parametrize("seed", range(20))
def test_seqeval_scores_equal_the_previous_scorer_on_perturbed_tags(seed):
    """Untyped (BioBERT) and typed tags, I without B, type changes, empty predictions: both protocols' numbers
    are unchanged by the move to seqeval."""
    rng = random.Random(seed)
    labels = ["O", "B", "I"] if seed % 2 else ["O", "B-Chemical", "I-Chemical", "B-Disease", "I-Disease"]
    gold = [[rng.choice(labels) for _ in range(rng.randint(1, 12))] for _ in range(60)]
    pred = perturbed(gold, rng, labels, rate=0.05 + 0.04 * seed)
    expected = reference_scores(gold, pred)
    assert 0.0 < expected["f1"] < 1.0
    scores = ner_scoring.entity_scores(gold, pred)
    assert {key: scores[key] for key in expected} == pytest.approx(expected, abs=1e-12)
    assert ner_scoring.entity_scores(gold, [["O"] * len(tags) for tags in gold])["f1"] == 0.0


def test_seqeval_scores_equal_the_previous_scorer_on_real_finetuned_predictions(tiny_bert_dir, toy_data_dir, tmp_path):
    """Both protocols, dev and test, on the predictions of a real fine-tuning run."""
    hp = {**QUICK, "epochs": 2}
    metrics = ner_finetune.finetune(tiny_bert_dir, toy_data_dir, tmp_path / "run", seed=2, hparams=hp)
    rows = [
        block.split("\n")
        for block in (tmp_path / "run" / "predictions.tsv").read_text(encoding="utf-8").rstrip("\n").split("\n\n")
    ]
    gold = [[line.split("\t")[1] for line in block] for block in rows]
    pred = [[line.split("\t")[2] for line in block] for block in rows]
    expected = reference_scores(gold, pred)
    assert 0.0 < expected["f1"]
    assert {key: metrics["test"]["word"][key] for key in expected} == pytest.approx(expected, abs=1e-12)


def test_seqeval_scores_equal_the_previous_scorer_on_real_tags_with_noise():
    """The scores equal the previous scorer's on real gold tags and noisy predictions."""
    gold = [tags for _, tags in read_split(shared_path("ner", "BC5CDR-disease") / "test.tsv")][:800]
    pred = perturbed(gold, random.Random(0), ["O", "B", "I", "B-Chemical", "I-Chemical", "I-Disease"], rate=0.15)
    expected = reference_scores(gold, pred)
    ours = ner_scoring.entity_scores(gold, pred)
    assert {key: ours[key] for key in expected} == pytest.approx(expected, abs=1e-12)
    assert 0.3 < ours["f1"] < 0.95  # the noise matters: this is not a trivial all-equal case


def test_a_training_step_reads_at_most_one_value_back_from_the_device_between_logging_steps(
    tiny_bert_dir, toy_data_dir, tmp_path, monkeypatch
):
    """A read of a device value makes the host wait for the GPU's queued work, which then idles while the host
    launches the next. A training step reads at most one value back: transformers' SDPA mask checks whether the batch
    holds padding (`padding_mask.all()`, to choose its kernel). Before, there were 3: transformers' NaN filter also
    read every step's loss (`logging_nan_inf_filter`); the log now shows a NaN loss as it is."""
    from transformers import Trainer

    reads = [0]  # host reads of device values, per training step since the last one began

    class CountingReads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func is torch.ops.aten._local_scalar_dense.default:
                reads[-1] += 1
            return func(*args, **(kwargs or {}))

    def marking_step(self, *args, training_step=Trainer.training_step, **kwargs):
        reads.append(0)
        return training_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", marking_step)
    hp = {**QUICK, "epochs": 1, "logging_steps": 100, "max_train_sentences": 48, "max_eval_sentences": 4}
    with CountingReads():
        ner_finetune.finetune(tiny_bert_dir, toy_data_dir, tmp_path / "out", seed=1, hparams=hp)
    steps = reads[1:]
    assert len(steps) == 6  # 48 windows / 8
    assert max(steps[:-1]) <= 1 and steps[-1] > 1  # the last: the end of training and the predictions


def test_a_job_that_sees_several_gpus_trains_on_one_with_the_papers_batch(monkeypatch, tmp_path):
    """A fine-tuning job on a workstation with several GPUs sees them all (Snakemake gives a local job no GPU of its
    own). Before, the Trainer wrapped the model in DataParallel over all of them, which multiplied the batch by the
    GPU count (16 became 64 on 4 GPUs), away from the paper's protocol. A job keeps to one GPU, as pre-training does."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)  # what transformers counts as this process's GPUs
    hp = ner_finetune.resolve_hparams({"batch_size": 16})
    args = ner_train.training_arguments(str(tmp_path), hp, seed=1, train_windows=160)
    assert args.n_gpu == 1 and args.train_batch_size == 16
