"""Downloads streamed with progress, in one attempt that fails with one line naming the URL.

No retry loop here: Snakemake's `retries:` reruns a failed fetch job (rules fetch_pubmed, fetch_ner), whose
outputs are written atomically, and a user of the CLI reruns the step.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import sys
import urllib.error
import urllib.request
from pathlib import Path

from .io import InputError

CHUNK_BYTES = 1 << 20
PROGRESS_EVERY_BYTES = 8 << 20


@contextlib.contextmanager
def network_errors_as_input_errors(url: str):
    """A failed transfer as one line naming the URL, instead of urllib's traceback."""
    try:
        yield
    except urllib.error.HTTPError as err:
        raise InputError(url, f"HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:  # timeouts, resets, refused
        raise InputError(url, f"download failed: {one_line(err)}") from None


def download_bytes(url: str, timeout: float = 60) -> bytes:
    with network_errors_as_input_errors(url), urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def download_to(url: str, target: Path, timeout: float = 60) -> str:
    """Stream `url` into `target` (overwritten), reporting progress on stderr; return the data's md5."""
    digest = hashlib.md5()
    received = 0
    next_report = PROGRESS_EVERY_BYTES
    with (
        network_errors_as_input_errors(url),
        urllib.request.urlopen(url, timeout=timeout) as response,
        open(target, "wb") as out,
    ):
        expected_length = response.headers.get("Content-Length")
        for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if received >= next_report:
                print(f"{url}: {received / 2**20:.0f} MB", file=sys.stderr)
                next_report += PROGRESS_EVERY_BYTES
    if expected_length is not None and received != int(expected_length):
        raise InputError(url, f"download failed: connection closed after {received} of {expected_length} bytes")
    print(f"{url}: done, {received / 2**20:.1f} MB", file=sys.stderr)
    return digest.hexdigest()


def one_line(err) -> str:
    return " ".join(str(err).split())
