"""All-or-nothing outputs that never replace what their step did not write (the CLI and every Snakemake job)."""

import pytest

from compact_biomed.io import OUTPUT_MARKER, InputError, atomic_path, output_step


def write_folder(path, step, files):
    with atomic_path(path, is_dir=True, step=step) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)


def test_folder_output_is_marked_and_replaces_only_its_own_step(tmp_path):
    out = tmp_path / "out"
    write_folder(out, "tokenize-shard", {"a.txt": "1", "b.txt": "2"})
    assert output_step(out) == "tokenize-shard"
    write_folder(out, "tokenize-shard", {"a.txt": "3"})  # a rerun replaces the whole previous output
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "a.txt"] and (out / "a.txt").read_text() == "3"
    with pytest.raises(InputError, match="'pretrain' did not write"):
        write_folder(out, "pretrain", {"x.txt": "x"})
    assert (out / "a.txt").read_text() == "3"


def test_unrelated_or_current_folder_is_refused_before_the_work_and_left_whole(tmp_path, monkeypatch):
    out = tmp_path / "mine"
    (out / "sub").mkdir(parents=True)
    (out / "notes.txt").write_text("keep")
    (out / "sub" / "deep.txt").write_text("keep")
    ran = []
    with pytest.raises(InputError, match="non-empty folder"), atomic_path(out, is_dir=True, step="checkpoint"):
        ran.append(True)
    assert not ran
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["notes.txt", "sub", "sub/deep.txt"]
    monkeypatch.chdir(out)
    with pytest.raises(InputError, match=str(out)):
        write_folder(".", "checkpoint", {"x.txt": "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # and no temporary folder left beside it


def test_empty_folder_is_used_and_a_file_never_replaces_a_folder(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_folder(empty, "finetune-ner", {"metrics.json": "{}"})
    assert output_step(empty) == "finetune-ner"
    with pytest.raises(InputError, match="is a folder; expected a file"), atomic_path(empty) as tmp:
        tmp.write_text("x")
    assert (empty / "metrics.json").read_text() == "{}"
    with pytest.raises(ValueError, match="needs the step"), atomic_path(tmp_path / "other", is_dir=True):
        pass
