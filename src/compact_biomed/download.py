"""Downloads that survive flaky networks: retries with exponential back-off, streamed with progress."""

from __future__ import annotations

import hashlib
import http.client
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .io import InputError

CHUNK_BYTES = 1 << 20
PROGRESS_EVERY_BYTES = 8 << 20


class ChecksumMismatch(InputError):
    """Raised inside a download attempt so that a corrupted transfer is retried."""


# Network trouble worth another attempt; HTTP 4xx other than 408/429 is not (the file does not exist).
TRANSIENT = (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError, OSError)


def with_retries(url: str, action, retries: int, backoff: float):
    attempts = 1 + max(0, retries)
    for attempt in range(attempts):
        try:
            return action()
        except urllib.error.HTTPError as err:
            if err.code not in (408, 429) and err.code < 500:
                raise InputError(url, f"HTTP {err.code} {err.reason}") from None
            failure = err
        except ChecksumMismatch as err:
            failure = err
        except TRANSIENT as err:
            failure = err
        if attempt + 1 < attempts:
            delay = backoff * 2**attempt
            print(f"{url}: attempt {attempt + 1}/{attempts} failed ({one_line(failure)}); retrying in {delay:g}s",
                  file=sys.stderr)
            time.sleep(delay)
    if isinstance(failure, ChecksumMismatch):
        raise InputError(failure.path, f"{failure.problem} (after {attempts} attempts)") from None
    raise InputError(url, f"download failed after {attempts} attempts: {one_line(failure)}") from None


def download_bytes(url: str, timeout: float = 60) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read()


def download_to(url: str, target: Path, timeout: float = 60) -> str:
    """Stream `url` into `target` (overwritten), reporting progress on stderr; return the data's md5."""
    digest = hashlib.md5()
    received = 0
    next_report = PROGRESS_EVERY_BYTES
    with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
        expected_length = response.headers.get("Content-Length")
        for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
            out.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            if received >= next_report:
                print(f"{url}: {received / 2**20:.0f} MB", file=sys.stderr)
                next_report += PROGRESS_EVERY_BYTES
    if expected_length is not None and received != int(expected_length):
        raise ConnectionError(f"connection closed after {received} of {expected_length} bytes")
    print(f"{url}: done, {received / 2**20:.1f} MB", file=sys.stderr)
    return digest.hexdigest()




def one_line(err) -> str:
    return " ".join(str(err).split())
