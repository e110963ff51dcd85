"""PubMed fetching, parsing and corpus building, on the real sample and on small hand-written files."""

import gzip
import http.server
import re
import shutil
import threading

import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, shared_path

from compact_biomed.config import ConfigError
from compact_biomed.corpus import build_corpus, build_text
from compact_biomed.io import InputError, read_json
from compact_biomed.pubmed import (
    fetch,
    file_md5,
    iter_citations,
    parse_md5_sidecar,
    parse_to_parquet,
)

SAMPLE_NAME = "pubmed25n1274"


def corpus_from_xml(xml_paths, out, stats):
    """What the workflow does: parse each file to Parquet on its own (parse_pubmed), then merge (build_corpus)."""
    parsed = [out.parent / f"parsed-{i}.parquet" for i in range(len(xml_paths))]
    for xml_path, parsed_path in zip(xml_paths, parsed):
        parse_to_parquet(xml_path, parsed_path)
    return build_corpus(parsed, out, stats, text_format="title_abstract")


@pytest.fixture(scope="module")
def sample():
    return shared_path("pubmed", f"{SAMPLE_NAME}.xml.gz")


@pytest.fixture(scope="module")
def sample_records(sample):
    return {record["pmid"]: record for record in iter_citations(sample)}


# ------------------------------------------------------------------------------------------ real sample


def test_sample_citation_count_matches_an_independent_count(sample, sample_records):
    raw = gzip.decompress(sample.read_bytes())
    expected = len(re.findall(rb"<PubmedArticle>", raw))
    assert expected == 30  # the shared README says so
    assert len(sample_records) == expected
    assert not any(record.get("deleted") for record in sample_records.values())


def test_structured_abstract_keeps_every_section_in_order(sample, sample_records):
    raw = gzip.decompress(sample.read_bytes()).decode()
    record_xml = re.search(r"<PMID Version=\"1\">39762092</PMID>.*?</Abstract>", raw, re.DOTALL).group(0)
    labels = re.findall(r'<AbstractText Label="([^"]*)"', record_xml)
    record = sample_records[39762092]
    assert len(labels) == 7
    assert [label for label, _ in record["sections"]] == labels
    assert record["abstract"] == " ".join(text for _, text in record["sections"])
    assert all(text for _, text in record["sections"])


def test_inline_markup_is_flattened(sample_records):
    assert "1.06-2.97; p = 0.029" in sample_records[39737331]["abstract"]
    assert "Phospholipase A2 (PLA2) activity" in sample_records[39733610]["abstract"]
    assert sample_records[39761186]["abstract"].endswith("[J Nurs Educ. 2025;64(1):60-62.].")
    assert "Oxford-AstraZeneca® SARS-CoV-2 Vaccine" in sample_records[39748592]["title"]
    for record in sample_records.values():
        assert not re.search(r"</?(i|b|sup|sub)>", record["title"] + record["abstract"])
    assert "(P < 0.05)" in sample_records[39733610]["abstract"]  # escaped text stays text


def test_sample_fields(sample_records):
    german = sample_records[39738524]
    assert german["language"] == "ger"
    assert german["title"].startswith("[")
    assert not build_text(german["title"], german["abstract"], "title_abstract").startswith("[")
    assert sample_records[39748592]["abstract"] == ""  # a title-only record
    assert {record["year"] for record in sample_records.values()} <= {2024, 2025}
    assert {record["version"] for record in sample_records.values()} == {1}


def test_sample_builds_a_corpus(sample, tmp_path):
    stats = corpus_from_xml([sample], tmp_path / "corpus.parquet", tmp_path / "stats.json")
    table = pq.read_table(tmp_path / "corpus.parquet")
    assert stats == read_json(tmp_path / "stats.json")
    assert stats["records"] == table.num_rows == 30
    assert stats["with_abstract"] == 26 and stats["title_only"] == 4
    assert str(table.schema.field("pmid").type) == "int64"
    assert str(table.schema.field("version").type) == "int32"
    assert str(table.schema.field("year").type) == "int32"
    assert table.column("pmid").to_pylist() == [r["pmid"] for r in iter_citations(sample)]  # the file's order


# --------------------------------------------------------------------------------------------- checksums


@pytest.mark.parametrize(
    "content",
    [
        "MD5(pubmed25n1274.xml.gz)= 38509CD5DC0B69426D3B1B840BDC4E9F\n",
        "38509cd5dc0b69426d3b1b840bdc4e9f\n",
        "38509cd5dc0b69426d3b1b840bdc4e9f  pubmed25n1274.xml.gz\n",
    ],
)
def test_md5_sidecar_formats(tmp_path, content):
    path = tmp_path / "x.md5"
    path.write_text(content)
    assert parse_md5_sidecar(path) == "38509cd5dc0b69426d3b1b840bdc4e9f"


def test_md5_sidecar_errors_name_the_file(tmp_path):
    garbage = tmp_path / "garbage.md5"
    garbage.write_text("not a checksum\n")
    with pytest.raises(InputError, match="garbage.md5"):
        parse_md5_sidecar(garbage)
    with pytest.raises(InputError, match="absent.md5"):
        parse_md5_sidecar(tmp_path / "absent.md5")


def test_fetch_from_local_dir_verifies_the_sidecar(sample, tmp_path):
    out = fetch(SAMPLE_NAME, tmp_path / "raw", local_dir=sample.parent)
    assert out == tmp_path / "raw" / f"{SAMPLE_NAME}.xml.gz"
    assert (
        file_md5(out)
        == parse_md5_sidecar(out.with_name(out.name + ".md5"))
        == parse_md5_sidecar(sample.with_name(sample.name + ".md5"))
    )
    assert out.read_bytes() == sample.read_bytes()


def test_fetch_rejects_a_corrupted_copy_and_leaves_nothing(sample, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    data = bytearray(sample.read_bytes())
    data[len(data) // 2] ^= 0xFF
    (source / sample.name).write_bytes(bytes(data))
    shutil.copy(sample.with_name(sample.name + ".md5"), source)
    expected = parse_md5_sidecar(source / f"{sample.name}.md5")
    actual = file_md5(source / sample.name)

    with pytest.raises(InputError) as error:
        fetch(SAMPLE_NAME, tmp_path / "raw", local_dir=source)
    message = str(error.value)
    assert sample.name in message and expected in message and actual in message
    assert "\n" not in message
    assert not (tmp_path / "raw").exists()  # not even the folder made for it


def test_fetch_from_local_dir_without_sidecar(sample, tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    shutil.copy(sample, source)
    with pytest.raises(InputError, match=r"\.md5"):
        fetch(SAMPLE_NAME, tmp_path / "raw", local_dir=source)


# ------------------------------------------------------------------------------- downloads (local server)


class _Server:
    """Serves `files` on 127.0.0.1; the first `failures` requests of each path answer 503."""

    def __init__(self, files: dict, failures: int = 0):
        self.files, self.failures, self.requests = files, failures, []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append(self.path)
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                elif owner.requests.count(self.path) <= owner.failures:
                    self.send_error(503)
                else:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/baseline/"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve(monkeypatch):
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    servers = []

    def start(files, failures=0):
        servers.append(_Server(files, failures))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def _served_files(sample, data=None):
    sidecar = sample.with_name(sample.name + ".md5").read_bytes()
    return {f"/baseline/{sample.name}": data or sample.read_bytes(), f"/baseline/{sample.name}.md5": sidecar}


def test_a_failed_download_is_one_line_leaves_nothing_and_a_rerun_fetches(sample, tmp_path, serve):
    """One attempt (Snakemake's `retries:` reruns the job): a 503 of the sidecar, then of the data, fails it
    cleanly each time, without a sidecar or partial file left behind; the third run gets the file."""
    server = serve(_served_files(sample), failures=1)
    for failing in (f"{sample.name}.md5", sample.name):
        with pytest.raises(InputError) as error:
            fetch(SAMPLE_NAME, tmp_path / "raw", base_url=server.url)
        assert str(error.value) == f"{server.url}{failing}: HTTP 503 Service Unavailable"
        assert [path for path in tmp_path.rglob("*") if path.is_file()] == []
    assert fetch(SAMPLE_NAME, tmp_path / "raw", base_url=server.url).read_bytes() == sample.read_bytes()
    assert (tmp_path / "raw" / f"{sample.name}.md5").exists()


def test_download_with_wrong_md5_fails_cleanly(sample, tmp_path, serve):
    corrupted = bytearray(sample.read_bytes())
    corrupted[100] ^= 0x01
    server = serve(_served_files(sample, bytes(corrupted)))
    with pytest.raises(InputError) as error:
        fetch(SAMPLE_NAME, tmp_path / "raw", base_url=server.url)
    assert "38509cd5dc0b69426d3b1b840bdc4e9f" in str(error.value) and sample.name in str(error.value)
    assert server.requests.count(f"/baseline/{sample.name}") == 1
    assert not (tmp_path / "raw").exists()


def test_download_missing_file_is_one_line(tmp_path, serve):
    server = serve({})
    with pytest.raises(InputError, match="pubmed25n9999.xml.gz.md5: HTTP 404"):
        fetch("pubmed25n9999", tmp_path / "raw", base_url=server.url)
    assert len(server.requests) == 1


def test_fetch_pubmed_step_downloads_from_the_configs_base_url_unless_given(sample, tmp_path, serve):
    from compact_biomed.cli import main

    server, other = serve(_served_files(sample)), serve(_served_files(sample))
    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config["pubmed"]["base_url"] = server.url
    (tmp_path / "own.yaml").write_text(yaml.safe_dump(config))
    step = ["fetch-pubmed", SAMPLE_NAME, "--config", str(tmp_path / "own.yaml")]
    assert main([*step, "--out-dir", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / sample.name).read_bytes() == sample.read_bytes()
    assert main([*step, "--out-dir", str(tmp_path / "b"), "--base-url", other.url]) == 0
    assert len(server.requests) == len(other.requests) == 2  # the file and its sidecar, once from each


# -------------------------------------------------------------------------------- hand-written XML files


def _citation(pmid, title, abstract=None, version=None, year="2001", tag="MedlineCitation"):
    version_attr = f' Version="{version}"' if version else ""
    abstract_xml = f"<Abstract><AbstractText>{abstract}</AbstractText></Abstract>" if abstract else ""
    return (
        f'<{tag} Owner="NLM"><PMID{version_attr}>{pmid}</PMID><Article><Journal><JournalIssue><PubDate>'
        f"<Year>{year}</Year></PubDate></JournalIssue></Journal><ArticleTitle>{title}</ArticleTitle>"
        f"{abstract_xml}<Language>eng</Language></Article></{tag}>"
    )


def _article(*args, **kwargs):
    return f"<PubmedArticle>{_citation(*args, **kwargs)}<PubmedData/></PubmedArticle>"


@pytest.fixture
def two_files(tmp_path):
    current = tmp_path / "current.xml.gz"
    current.write_bytes(
        gzip.compress(
            (
                '<?xml version="1.0" encoding="UTF-8"?>\n<PubmedArticleSet>\n'
                + _article(100, "[Old title.]", "Old abstract.", version=1)
                + _article(200, "Second, v1.", "One.", version=1)
                + _article(200, "Second, v2.", "Two.", version=2)
                + _article(300, "Third.", "To be deleted.")
                + '<PubmedBookArticle><BookDocument><PMID Version="1">555</PMID></BookDocument></PubmedBookArticle>'
                + "</PubmedArticleSet>\n"
            ).encode()
        )
    )
    legacy = tmp_path / "legacy.xml"
    legacy.write_text(
        "<MedlineCitationSet>\n"
        + _citation(100, "Updated.", "New abstract.", version=1)
        + _citation(200, "Second, late v1.", "Late.", version=1)
        + '<DeleteCitation><PMID Version="1">300</PMID><PMID Version="1">999</PMID></DeleteCitation>'
        + _citation(400, "Title only.")
        + "</MedlineCitationSet>\n"
    )
    return current, legacy


def test_legacy_format_and_deletions_are_parsed(two_files):
    records = list(iter_citations(two_files[1]))
    assert [r["pmid"] for r in records] == [100, 200, 300, 999, 400]
    assert records[2] == {"pmid": 300, "deleted": True}
    assert records[4]["abstract"] == "" and records[4]["version"] == 1 and records[4]["year"] == 2001


def test_book_articles_are_skipped(two_files):
    assert [r["pmid"] for r in iter_citations(two_files[0])] == [100, 200, 200, 300]


def test_corpus_merges_versions_files_and_deletions(two_files, tmp_path):
    stats = corpus_from_xml(list(two_files), tmp_path / "c.parquet", tmp_path / "s.json")
    table = pq.read_table(tmp_path / "c.parquet")
    assert table.column("pmid").to_pylist() == [200, 100, 400]  # each winner where it occurred, files in order
    rows = {row["pmid"]: row for row in table.to_pylist()}
    assert rows[100]["title"] == "Updated."  # later file wins
    assert (rows[200]["version"], rows[200]["abstract"]) == (2, "Two.")  # higher version beats a later v1
    assert rows[400]["text"] == "Title only."
    assert stats["citations_parsed"] == 7 and stats["deletions_listed"] == 2
    assert stats["deleted"] == 1 and stats["duplicates_replaced"] == 3 and stats["records"] == 3


def test_corpus_file_order_matters_and_readding_after_delete(two_files, tmp_path):
    current, legacy = two_files
    corpus_from_xml([legacy, current], tmp_path / "c.parquet", tmp_path / "s.json")
    rows = {row["pmid"]: row for row in pq.read_table(tmp_path / "c.parquet").to_pylist()}
    assert rows[100]["text"] == "Old title. Old abstract."  # brackets removed by the text format
    assert 300 in rows  # the deletion came before this file re-added it


@pytest.mark.parametrize("chunk_bytes", [1, 97, 4096])
def test_records_do_not_depend_on_where_chunks_are_cut(sample, sample_records, monkeypatch, chunk_bytes):
    # Unused elements (PubmedData, AuthorList) are cut out of each chunk before parsing: a chunk boundary inside
    # one must neither lose a record nor let the parser see half an element.
    from compact_biomed import pubmed

    monkeypatch.setattr(pubmed, "CHUNK_BYTES", chunk_bytes)
    assert list(iter_citations(sample)) == list(sample_records.values())


def test_error_line_numbers_count_the_lines_of_skipped_elements(tmp_path):
    path = tmp_path / "bad_after_authors.xml"
    path.write_text(
        "<PubmedArticleSet>\n"
        + _article(1, "T.", "A.").replace("<Article>", "<Article><AuthorList>\n<Author>\n</Author>\n</AuthorList>")
        + "\n"
        + "<PubmedArticle><PubmedData>\n\n</PubmedData>\n<MedlineCitation><PMID>x</PMID></MedlineCitation>"
        + "</PubmedArticle></PubmedArticleSet>"
    )
    with pytest.raises(InputError, match=r"bad <MedlineCitation> at line 9"):
        list(iter_citations(path))


def test_medline_date_year(tmp_path):
    path = tmp_path / "medline_date.xml"
    path.write_text(
        "<PubmedArticleSet>"
        + _article(1, "T.", "A.").replace("<Year>2001</Year>", "<MedlineDate>1998 Dec-1999 Jan</MedlineDate>")
        + "</PubmedArticleSet>"
    )
    assert next(iter_citations(path))["year"] == 1998


def test_corpus_without_citations_is_an_error(tmp_path):
    path = tmp_path / "only_deletions.xml"
    path.write_text('<PubmedArticleSet><DeleteCitation><PMID Version="1">1</PMID></DeleteCitation></PubmedArticleSet>')
    with pytest.raises(InputError, match="empty"):
        corpus_from_xml([path], tmp_path / "c.parquet", tmp_path / "s.json")
    assert not (tmp_path / "c.parquet").exists()


# ------------------------------------------------------------------------------------------- bad inputs


def _truncated_gzip(tmp_path, sample):
    path = tmp_path / "truncated.xml.gz"
    path.write_bytes(sample.read_bytes()[:20000])
    return path


def _bad_files(tmp_path):
    files = {
        "malformed.xml": b"<PubmedArticleSet><PubmedArticle><MedlineCitation></PubmedArticle></PubmedArticleSet>",
        "wrong_root.xml": b"<?xml version='1.0'?><html><body><MedlineCitation/></body></html>",
        "wrong_root_no_records.xml.gz": gzip.compress(b"<feed><entry>x</entry></feed>"),
        "empty.xml": b"",
        "empty.xml.gz": gzip.compress(b""),
        "unclosed.xml": b"<PubmedArticleSet>" + _article(1, "T.", "A.").encode(),
        "not_gzip.xml.gz": b"\x1f\x8b\x08garbage that is not deflate data",
        "plain_text.xml.gz": b"PMID 123: a plain-text export, not gzip\n",
        "cut_xml.xml.gz": gzip.compress(b"<PubmedArticleSet><PubmedArticle><MedlineCitation>"),  # whole gzip
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    return [tmp_path / name for name in files]


def test_bad_files_raise_one_line_input_errors(tmp_path, sample):
    for path in [_truncated_gzip(tmp_path, sample), *_bad_files(tmp_path)]:
        with pytest.raises(InputError) as error:
            list(iter_citations(path))
        message = str(error.value)
        assert path.name in message and "\n" not in message, message


def test_bad_file_error_messages_say_what_is_wrong(tmp_path, sample):
    problems = {path.name: _problem(path) for path in [_truncated_gzip(tmp_path, sample), *_bad_files(tmp_path)]}
    assert "truncated" in problems["truncated.xml.gz"]
    assert "not PubMed XML" in problems["wrong_root.xml"]
    assert "not PubMed XML" in problems["wrong_root_no_records.xml.gz"]
    assert "empty" in problems["empty.xml"] and "empty" in problems["empty.xml.gz"]
    assert "malformed" in problems["malformed.xml"]
    assert problems["plain_text.xml.gz"].startswith("not gzip, and not XML")  # named .gz: not "not XML" alone
    assert problems["cut_xml.xml.gz"].startswith("truncated XML")  # the gzip is whole: not "not gzip"


def _problem(path):
    with pytest.raises(InputError) as error:
        list(iter_citations(path))
    return error.value.problem


@pytest.mark.parametrize("pmid", ["<PMID>abc</PMID>", ""])
def test_bad_pmid_is_an_input_error(tmp_path, pmid):
    path = tmp_path / "bad_pmid.xml"
    path.write_text(
        f"<PubmedArticleSet>\n<PubmedArticle><MedlineCitation>{pmid}</MedlineCitation></PubmedArticle>"
        "</PubmedArticleSet>"
    )
    with pytest.raises(InputError, match=r"bad_pmid.xml: bad <MedlineCitation> at line 2"):
        list(iter_citations(path))


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="absent.xml.gz"):
        list(iter_citations(tmp_path / "absent.xml.gz"))


# ------------------------------------------------------------------------------------------ text format


def test_build_text_title_abstract():
    assert build_text("[Translated title.]", "The abstract.", "title_abstract") == "Translated title. The abstract."
    assert build_text("Title only.", "", "title_abstract") == "Title only."
    assert build_text("  Padded ", " text  ", "title_abstract") == "Padded   text"
    assert build_text("", "", "title_abstract") == ""
    with pytest.raises(ConfigError, match="'pubmed.text_format': 'nope'"):
        build_text("t", "a", text_format="nope")
