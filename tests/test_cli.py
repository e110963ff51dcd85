"""The PubMed steps from the command line, without Snakemake, as the README shows them."""

import gzip
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from compact_biomed.cli import main
from compact_biomed.io import read_json
from conftest import shared_path


def test_pubmed_steps_from_the_command_line(tmp_path):
    sample = shared_path("pubmed", "pubmed25n1274.xml.gz")
    raw, parsed = tmp_path / "raw", tmp_path / "parsed"
    assert main(["fetch-pubmed", "pubmed25n1274", "--out-dir", str(raw), "--local-dir", str(sample.parent)]) == 0
    assert main(["parse-pubmed", str(raw / "pubmed25n1274.xml.gz"), "--out-dir", str(parsed)]) == 0
    corpus, stats = tmp_path / "corpus.parquet", tmp_path / "stats.json"
    assert main(["build-corpus", str(parsed / "pubmed25n1274.parquet"), "--out", str(corpus),
                 "--stats", str(stats)]) == 0
    assert pq.read_metadata(corpus).num_rows == read_json(stats)["records"] == 30


def test_bad_input_gives_one_line_and_exit_status_1(tmp_path, capsys):
    truncated = tmp_path / "pubmed25n0001.xml.gz"
    truncated.write_bytes(gzip.compress(b"<PubmedArticleSet><PubmedArticle>" * 50)[:60])
    assert main(["parse-pubmed", str(truncated), "--out-dir", str(tmp_path / "parsed")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("compact-biomed parse-pubmed: error: ") and str(truncated) in error
    assert error.count("\n") == 1
    assert not (tmp_path / "parsed" / "pubmed25n0001.parquet").exists()


def test_console_script_is_installed():
    script = Path(sys.executable).with_name("compact-biomed")
    result = subprocess.run([str(script), "--help"], check=False, capture_output=True, text=True)
    assert result.returncode == 0
    assert "parse-pubmed" in result.stdout and "fetch-huggingface-pubmed" in result.stdout
