"""BioBERT's preprocessed NER datasets (`datasets.tar.gz`, the paper's source), fetched and unpacked.

The archive holds `datasets/NER/<name>/{train,devel,test,train_dev}.tsv` for eight sets; only the configured
ones are extracted, each into `<data_dir>/<name>/`.
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from ..download import download_to
from ..io import InputError, atomic_path

SPLITS = ("train", "devel", "test", "train_dev")
# The NER sets in the archive (datasets/NER/<name>/), spelled as there.
NER_SETS = ("NCBI-disease", "BC5CDR-disease", "BC5CDR-chem", "BC4CHEMD", "JNLPBA", "BC2GM", "linnaeus", "s800")


def extract(archive: str | Path, data_dir: str | Path, names: list[str]) -> None:
    """Extract the NER sets `names` from a BioBERT datasets archive into `data_dir/<name>/`."""
    try:
        with tarfile.open(archive) as tar:
            members = {Path(m.name).as_posix().removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
            for name in names:
                with atomic_path(Path(data_dir) / name, is_dir=True, step="fetch-ner") as tmp:
                    for split in SPLITS:
                        member = members.get(f"datasets/NER/{name}/{split}.tsv")
                        if member is None:
                            raise InputError(archive, f"has no datasets/NER/{name}/{split}.tsv")
                        with tar.extractfile(member) as src, open(tmp / f"{split}.tsv", "wb") as dst:
                            shutil.copyfileobj(src, dst)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise InputError(archive, f"not a readable tar.gz archive ({err})") from None


def fetch(url: str, data_dir: str | Path, names: list[str]) -> None:
    """Download the archive (a local path is taken as it is) and extract the configured sets. One attempt: a
    failure leaves nothing and is one line; Snakemake's `retries:` reruns the job. The download is a temporary
    file of its own in `data_dir` (the archive is large), deleted after extraction: never a file of the user's."""
    data_dir = Path(data_dir)
    if Path(url).exists():
        extract(url, data_dir, names)
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-ner.", dir=data_dir) as tmp:
        archive = Path(tmp) / "datasets.tar.gz"
        download_to(url, archive)
        try:
            extract(archive, data_dir, names)
        except InputError as error:
            if error.path != str(archive):
                raise
            raise InputError(url, error.problem) from None  # the URL, not the temporary file
