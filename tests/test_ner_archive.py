"""BioBERT's datasets archive: the configured sets are extracted into the data folder, bad archives rejected."""

import functools
import http.server
import io
import tarfile
import threading

import pytest
from conftest import shared_path

from compact_biomed.io import OUTPUT_MARKER, InputError
from compact_biomed.ner import archive as ner_archive


def make_archive(path, names, source_dir):
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            for split in ner_archive.SPLITS:
                tar.add(source_dir / f"{split}.tsv", arcname=f"datasets/NER/{name}/{split}.tsv")
        tar.addfile(tarfile.TarInfo("datasets/RE/GAD/1/train.tsv"), io.BytesIO(b""))


def test_extracts_configured_sets_from_a_real_layout(tmp_path):
    real = shared_path("ner", "BC5CDR-chem")
    archive = tmp_path / "datasets.tar.gz"
    make_archive(archive, ["BC5CDR-chem", "NCBI-disease"], real)
    ner_archive.fetch(str(archive), tmp_path / "NER", ["BC5CDR-chem"])
    out = tmp_path / "NER" / "BC5CDR-chem"
    assert sorted(p.name for p in out.iterdir()) == sorted([OUTPUT_MARKER] + [f"{s}.tsv" for s in ner_archive.SPLITS])
    assert (out / "test.tsv").read_bytes() == (real / "test.tsv").read_bytes()
    assert not (tmp_path / "NER" / "NCBI-disease").exists()  # only what the config asks for


def test_missing_set_and_corrupt_archive_are_one_line_errors(tmp_path):
    real = shared_path("ner", "BC5CDR-chem")
    archive = tmp_path / "datasets.tar.gz"
    make_archive(archive, ["BC5CDR-chem"], real)
    with pytest.raises(InputError, match=r"datasets.tar.gz: has no datasets/NER/JNLPBA/train.tsv"):
        ner_archive.extract(archive, tmp_path / "NER", ["JNLPBA"])
    assert not (tmp_path / "NER" / "JNLPBA").exists()

    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(InputError, match="broken.tar.gz: not a readable tar.gz archive"):
        ner_archive.extract(broken, tmp_path / "NER", ["BC5CDR-chem"])


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A folder served over HTTP on 127.0.0.1, and its URL."""
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    folder = tmp_path / "www"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=folder))
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield folder, f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


def test_downloads_the_archive_and_a_failed_download_is_one_line_leaving_nothing(tmp_path, served):
    """One attempt (Snakemake's `retries:` reruns the job): a failure leaves no archive or set behind."""
    real = shared_path("ner", "BC5CDR-chem")
    folder, url = served
    make_archive(folder / "datasets.tar.gz", ["BC5CDR-chem"], real)
    with pytest.raises(InputError) as error:
        ner_archive.fetch(f"{url}missing.tar.gz", tmp_path / "NER", ["BC5CDR-chem"])
    assert str(error.value) == f"{url}missing.tar.gz: HTTP 404 File not found"
    assert list((tmp_path / "NER").iterdir()) == []
    ner_archive.fetch(f"{url}datasets.tar.gz", tmp_path / "NER", ["BC5CDR-chem"])
    assert (tmp_path / "NER" / "BC5CDR-chem" / "train.tsv").read_bytes() == (real / "train.tsv").read_bytes()
    assert sorted(p.name for p in (tmp_path / "NER").iterdir()) == ["BC5CDR-chem"]  # the download is not kept


def test_a_download_leaves_a_users_archive_in_the_data_folder_alone(tmp_path, served):
    """The download is the step's own temporary file: a `datasets.tar.gz` the user keeps there is not replaced."""
    folder, url = served
    make_archive(folder / "datasets.tar.gz", ["BC5CDR-chem"], shared_path("ner", "BC5CDR-chem"))
    (tmp_path / "NER").mkdir()
    (tmp_path / "NER" / "datasets.tar.gz").write_text("my own archive")
    ner_archive.fetch(f"{url}datasets.tar.gz", tmp_path / "NER", ["BC5CDR-chem"])
    assert (tmp_path / "NER" / "datasets.tar.gz").read_text() == "my own archive"
    (folder / "broken.tar.gz").write_bytes((folder / "datasets.tar.gz").read_bytes()[:200])
    with pytest.raises(InputError, match=rf"^{url}broken.tar.gz: not a readable tar.gz archive"):
        ner_archive.fetch(f"{url}broken.tar.gz", tmp_path / "NER", ["NCBI-disease"])
    assert sorted(p.name for p in (tmp_path / "NER").iterdir()) == ["BC5CDR-chem", "datasets.tar.gz"]
