"""``asgl data get``: fetch a recipe's dataset into ``data.root``, verified, resumable, extracted.

Nothing here runs unless a user asks for it (the loaders never download). The steps, for each archive of
:func:`archives`: :func:`fetch` downloads it into its folder (``<file>.part`` while incomplete; the final
name appears only once the md5 matches), then :func:`unpack` extracts it next to itself.

Where each part comes from:

- CIFAR-10 / CIFAR-100: URL, archive name and md5 are torchvision's (``CIFAR10.url``, ``.filename``,
  ``.tgz_md5``); the archives hold ``cifar-10-batches-py/`` and ``cifar-100-python/``.
- DVS128 Gesture and SHD: URLs, archive names and md5s are tonic's dataset classes (``DVSGesture``,
  ``SHD``), extracted where tonic extracts them (``<root>/DVSGesture``, ``<root>/SHD``). tonic is GPL-3.0,
  an optional extra, imported only here and only for these two.
- Tiny-ImageNet: hand-written here, as no installed library ships it: the cs231n URL and the zip's md5.
  The zip's own layout (``val/images`` with ``val/val_annotations.txt``) is what the loader reads, so no
  folder is rearranged.
- md5 sums and archive extraction: ``torchvision.datasets.utils`` (``calculate_md5``, ``extract_archive``).
- The transfer is hand-written: neither library resumes a partial file (HTTP ``Range``) nor reports
  progress to its caller.

Not fetched: ``digits`` (it ships with scikit-learn), ``audio_folder`` (MedleyDB is licensed: request it
from its authors), ``dvs_cifar10`` (tonic's archive holds an AEDAT 4 conversion; asgl reads the original
AEDAT 2.0 recordings).

``ASGL_DATA_MIRROR=http://host:port`` replaces the scheme and host of every URL (the path is kept): for
tests against a local server and for local mirrors.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit, urlunsplit
from urllib.request import Request, urlopen

from asgl.errors import UserError

MIRROR_ENV = "ASGL_DATA_MIRROR"
TIMEOUT_S = 60
CHUNK = 1 << 18
RERUN = "run `asgl data get RECIPE` again"
TINY_IMAGENET = ("http://cs231n.stanford.edu/tiny-imagenet-200.zip", "90528d7ca1a48142e341f4ef8d21d0de")

NOT_FETCHED: dict[str, str] = {
    "digits": "digits ship with scikit-learn: there is nothing to download",
    "audio_folder": "MedleyDB is licensed and cannot be downloaded here: request it from its authors, "
    "then put one folder of WAV files per class in data.root",
    "dvs_cifar10": "the CIFAR10-DVS archive that tonic downloads holds an AEDAT 4 conversion, and asgl reads the "
    "original AEDAT 2.0 recordings: `asgl data check RECIPE` says where to get them",
}

Progress = Callable[[int, "int | None"], None]  # (bytes on disk, total bytes or None)


class DownloadError(UserError):
    """A download that failed, stopped or did not verify; the message names the file and what to do."""


@dataclass(frozen=True)
class Archive:
    """One file to fetch: where from, its name and md5, and the folder under ``data.root`` it goes into."""

    url: str
    filename: str
    md5: str
    folder: str = ""


# ---------------------------------------------------------------- what each dataset needs


def _cifar(name: str) -> list[Archive]:
    from torchvision.datasets import CIFAR10, CIFAR100

    cls = CIFAR10 if name == "cifar10" else CIFAR100
    return [Archive(cls.url, cls.filename, cls.tgz_md5)]


def _tonic_datasets():
    try:
        import tonic.datasets
    except ImportError:
        raise DownloadError(
            'downloading this dataset needs tonic, an optional extra: pip install "asgl[events]"'
        ) from None
    return tonic.datasets


def _gesture(_: str) -> list[Archive]:
    g = _tonic_datasets().DVSGesture
    return [Archive(g.train_url, g.train_filename, g.train_md5, "DVSGesture"),
            Archive(g.test_url, g.test_filename, g.test_md5, "DVSGesture")]  # fmt: skip


def _shd(_: str) -> list[Archive]:
    s = _tonic_datasets().SHD
    return [Archive(s.base_url + s.train_zip, s.train_zip, s.train_md5, "SHD"),
            Archive(s.base_url + s.test_zip, s.test_zip, s.test_md5, "SHD")]  # fmt: skip


def _tiny_imagenet(_: str) -> list[Archive]:
    url, md5 = TINY_IMAGENET
    return [Archive(url, url.rsplit("/", 1)[1], md5)]


ARCHIVES: dict[str, Callable[[str], list[Archive]]] = {
    "cifar10": _cifar,
    "cifar100": _cifar,
    "tiny_imagenet": _tiny_imagenet,
    "dvs_gesture": _gesture,
    "shd": _shd,
}


def archives(name: str) -> list[Archive]:
    """The archives of dataset ``name``; :class:`DownloadError` saying why when it cannot be fetched."""
    if name not in ARCHIVES:
        raise DownloadError(NOT_FETCHED.get(name, f"no download is known for dataset {name!r}"))
    return ARCHIVES[name](name)


def mirrored(url: str) -> str:
    """``url`` with the scheme and host of ``$ASGL_DATA_MIRROR`` when it is set (tests, local mirrors)."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return url
    base, path = urlsplit(mirror), urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path.rstrip("/") + path.path, path.query, ""))


# ---------------------------------------------------------------- transfer


def _open(url: str, start: int) -> http.client.HTTPResponse:
    """The response for ``url`` from byte ``start`` (a ``Range`` request when ``start`` > 0)."""
    headers = {"Range": f"bytes={start}-"} if start else {}
    try:
        return urlopen(Request(url, headers=headers), timeout=TIMEOUT_S)
    except HTTPError as e:
        if e.code == 416 and start:  # the partial file is not a prefix of this one: start again
            return _open(url, 0)
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (URLError, OSError) as e:
        raise DownloadError(f"cannot download {url}: {getattr(e, 'reason', e)}") from None


def _resumes_at(response: http.client.HTTPResponse, start: int) -> bool:
    """Whether the server sent the rest of the file from byte ``start`` (206 with a matching Content-Range)."""
    content_range = response.headers.get("Content-Range", "")
    return response.status == 206 and content_range.startswith(f"bytes {start}-")


def download(url: str, part: Path, progress: Progress | None = None) -> None:
    """Bring ``part`` to the whole file at ``url``: resumed from its current size when the server honours
    ``Range``, restarted from byte 0 otherwise. An interrupted transfer keeps ``part`` for the next try and
    raises :class:`DownloadError`."""
    start = part.stat().st_size if part.exists() else 0
    response = _open(url, start)
    if start and not _resumes_at(response, start):
        if response.status == 206:  # a range we did not ask for: ask for the whole file
            response.close()
            response = _open(url, 0)
        start = 0
    length = response.headers.get("Content-Length")
    total = start + int(length) if length is not None else None
    done = start
    with response, open(part, "ab" if start else "wb") as out:
        if progress:
            progress(done, total)
        try:
            while chunk := response.read1(CHUNK):  # what has arrived, at most CHUNK bytes
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        except (OSError, http.client.HTTPException) as e:
            stopped = f"{type(e).__name__}: {e}"
        else:
            stopped = "" if total is None or done >= total else "the connection closed early"
    if stopped:
        of_total = f" of {total}" if total is not None else ""
        raise DownloadError(f"download of {part} stopped at {done}{of_total} bytes ({stopped}); {RERUN} to resume")


def fetch(archive: Archive, root: Path, progress: Progress | None = None) -> Path:
    """The verified archive at ``root/<folder>/<filename>``; downloaded (or resumed from ``<filename>.part``)
    unless an intact copy is already there. A wrong md5 removes the download and raises :class:`DownloadError`
    naming the file; the final name only ever holds a verified archive."""
    from torchvision.datasets.utils import calculate_md5

    path = root / archive.folder / archive.filename
    if path.is_file() and calculate_md5(path) == archive.md5:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    url = mirrored(archive.url)
    download(url, part, progress)
    md5 = calculate_md5(part)
    if md5 != archive.md5:
        part.unlink()
        raise DownloadError(
            f"checksum mismatch: {path} from {url} has md5 {md5}, expected {archive.md5}; "
            f"the download was removed and nothing was extracted: {RERUN}"
        )
    os.replace(part, path)
    return path


def unpack(path: Path) -> list[Path]:
    """Extract the archive ``path`` into its own folder and return the top-level entries it made.

    It is extracted into a hidden staging folder first and each top-level entry is then renamed into place
    (replacing an older copy), so a failure never leaves a half-extracted dataset under its real name."""
    from torchvision.datasets.utils import extract_archive

    staging = path.parent / f".{path.name}.extracting"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        extract_archive(str(path), str(staging))
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile) as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise DownloadError(f"cannot extract {path} ({type(e).__name__}: {e}); delete it and {RERUN}") from None
    made = []
    for entry in sorted(staging.iterdir()):
        target = path.parent / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(entry, target)
        made.append(target)
    staging.rmdir()
    return made
