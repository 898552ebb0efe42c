"""Download of the official CIFAR-10 python archive: resumable, atomic, checksum-verified."""

from __future__ import annotations

import os
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from ..core.files import file_digest

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FOLDER = "cifar-10-batches-py"
OFFLINE_HELP = (
    "Point veil at a local copy instead: --data PATH or VEIL_DATA=PATH, where PATH is an extracted "
    "'cifar-10-batches-py' folder, or a class-folder dataset (<root>/{train,test}/<class>/*.png) "
    "as a directory or a .zip."
)


class DownloadError(RuntimeError):
    pass


def download(url: str, dest: Path, md5: str, timeout: float = 10.0) -> Path:
    """Fetch url into dest, resuming a partial `.part` file; dest appears only once verified."""
    dest = Path(dest)
    if dest.exists() and file_digest(dest, "md5") == md5:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.exists() else 0
    try:
        _fetch(url, part, offset, timeout)
    except urllib.error.HTTPError as e:
        # 416: nothing left after `offset`, i.e. the part file is already complete: verify it
        if not (offset and e.code == 416):
            raise DownloadError(f"could not download {url}: {e}. {OFFLINE_HELP}") from e
    except (urllib.error.URLError, OSError) as e:
        raise DownloadError(f"could not download {url}: {e}. {OFFLINE_HELP}") from e
    got = file_digest(part, "md5")
    if got != md5:
        part.unlink()
        raise DownloadError(f"checksum mismatch for {url}: md5 {got}, expected {md5}; "
                            f"the partial file was removed, run again to retry")
    os.replace(part, dest)
    return dest


def _fetch(url: str, part: Path, offset: int, timeout: float) -> None:
    """Append url's bytes from `offset` to part (or rewrite it if the server ignores the range)."""
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if offset and response.status != 206:  # server ignored the range: start over
            offset = 0
        with open(part, "ab" if offset else "wb") as f:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                f.write(chunk)


def download_cifar10(cache_dir: Path, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> Path:
    """Return the extracted `cifar-10-batches-py` folder, downloading it if needed."""
    folder = Path(cache_dir) / CIFAR10_FOLDER
    if (folder / "test_batch").exists():
        return folder
    archive = download(url, Path(cache_dir) / "cifar-10-python.tar.gz", md5)
    tmp = Path(cache_dir) / (CIFAR10_FOLDER + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left over by an interrupted extraction
    with tarfile.open(archive) as tar:
        tar.extractall(tmp, filter="data")
    if not (tmp / CIFAR10_FOLDER / "test_batch").exists():
        raise DownloadError(f"{archive}: no {CIFAR10_FOLDER}/test_batch inside the archive")
    shutil.rmtree(folder, ignore_errors=True)  # an incomplete earlier copy
    os.replace(tmp / CIFAR10_FOLDER, folder)
    shutil.rmtree(tmp)
    return folder
