"""`asgl data get` against a loopback HTTP server that serves small archives in the real formats.

The server answers at the URL paths of torchvision's and tonic's dataset classes; ASGL_DATA_MIRROR sends
every download to it. The real md5 sums cannot match small archives, so each test sets the library's own
md5 attribute to its archive's md5 (which also shows that asgl reads the md5 from the library).
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from fixtures_audio import write_shd
from fixtures_events import write_gesture
from fixtures_images import write_cifar10, write_cifar100, write_tiny_imagenet
from torchvision.datasets import CIFAR10, CIFAR100
from typer.testing import CliRunner

from asgl.builders import build_data
from asgl.config import load_recipe
from asgl.data import DataMissingError
from asgl.data import download as dl
from asgl_cli.main import app

CUT = 20_000  # bytes sent before an interrupted response closes


class Mirror:
    """A loopback HTTP server: ``files`` maps URL paths to bytes. With ``ranges`` it answers ``Range:
    bytes=N-`` with 206 and the rest; without, it ignores Range. ``cut`` maps a path to a byte count after which
    the first response for that path closes the connection (its Content-Length still announces the whole)."""

    def __init__(self, files: dict[str, bytes], ranges: bool = True, cut: dict[str, int] | None = None) -> None:
        self.files, self.ranges, self.cut = files, ranges, dict(cut or {})
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.respond(self)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def respond(self, h: BaseHTTPRequestHandler) -> None:
        asked = h.headers.get("Range")
        self.requests.append((h.path, asked))
        body = self.files.get(h.path)
        if body is None:
            h.send_error(404)
            return
        start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1)) if asked and self.ranges else 0
        h.send_response(206 if start else 200)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        h.send_header("Content-Length", str(len(body) - start))
        h.end_headers()
        h.wfile.write(body[start : self.cut.pop(h.path, len(body))])


@pytest.fixture
def serve(monkeypatch):
    """``serve(files, **options)`` starts a :class:`Mirror` and points ASGL_DATA_MIRROR at it."""
    mirrors = []

    def start(files: dict[str, bytes], **options) -> Mirror:
        mirror = Mirror(files, **options)
        mirrors.append(mirror)
        monkeypatch.setenv(dl.MIRROR_ENV, mirror.url)
        return mirror

    yield start
    for mirror in mirrors:
        mirror.server.shutdown()
        mirror.server.server_close()


def tar_gz(folder: Path) -> bytes:
    """``folder`` as a .tar.gz whose one top-level entry is the folder's name (as the real archives)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return buf.getvalue()


def zip_of(folder: Path, names: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name in names:
            for path in [folder / name] if (folder / name).is_file() else sorted((folder / name).rglob("*")):
                z.write(path, path.relative_to(folder).as_posix())
    return buf.getvalue()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def path_of(url: str) -> str:
    return urlsplit(url).path


def get(name: str, root: Path) -> object:
    return CliRunner().invoke(app, ["data", "get", name, "--set", f"data.root={root}"])


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- CIFAR


def cifar_archive(tmp_path: Path, cls: type, monkeypatch) -> tuple[bytes, dict]:
    """A small archive of ``cls`` (CIFAR10/100) in the real layout, the library md5 set to its md5."""
    write = write_cifar10 if cls is CIFAR10 else write_cifar100
    arrays = write(tmp_path / "src")
    (tmp_path / "src" / cls.base_folder / "readme.html").write_text("<html></html>")
    archive = tar_gz(tmp_path / "src" / cls.base_folder)
    monkeypatch.setattr(cls, "tgz_md5", md5(archive))
    return archive, arrays


@pytest.mark.parametrize("name, cls", [("cifar10_resnet18", CIFAR10), ("cifar100_resnet18", CIFAR100)])
def test_get_cifar_then_the_loader_reads_it(tmp_path, serve, monkeypatch, name, cls):
    archive, arrays = cifar_archive(tmp_path, cls, monkeypatch)
    mirror = serve({path_of(cls.url): archive})
    root = tmp_path / "data"

    result = get(name, root)

    assert result.exit_code == 0, result.output
    assert mirror.requests == [(path_of(cls.url), None)]
    assert sorted(p.name for p in root.iterdir()) == sorted([cls.base_folder, cls.filename])  # no .part, no staging
    assert (root / cls.filename).read_bytes() == archive
    assert f"{cls.filename}: " in result.output and "md5 ok (downloaded)" in result.output
    assert "ready: every file checks out" in result.output
    assert "\x1b" not in result.output and "\r" not in result.output  # through a pipe: plain lines
    bundle = build_data(load_recipe(name, [f"data.root={root}"]))
    np.testing.assert_array_equal(bundle.test.images, arrays["test"][0])
    assert bundle.test.labels == arrays["test"][1]
    np.testing.assert_array_equal(bundle.train.dataset.images, arrays["train"][0])
    assert len(bundle.train) + len(bundle.val) == len(arrays["train"][1])


def test_second_get_downloads_nothing(tmp_path, serve, monkeypatch):
    archive, _ = cifar_archive(tmp_path, CIFAR10, monkeypatch)
    mirror = serve({path_of(CIFAR10.url): archive})
    root = tmp_path / "data"
    assert get("cifar10_resnet18", root).exit_code == 0
    again = get("cifar10_resnet18", root)
    assert again.exit_code == 0 and "already in place" in again.output
    (root / CIFAR10.base_folder / "test_batch").unlink()  # broken data, intact archive: extracted again
    third = get("cifar10_resnet18", root)
    assert third.exit_code == 0 and "md5 ok (already here)" in third.output, third.output
    assert len(mirror.requests) == 1
    assert (root / CIFAR10.base_folder / "test_batch").is_file()


def test_checksum_mismatch_extracts_nothing_and_names_the_file(tmp_path, serve, monkeypatch):
    archive, _ = cifar_archive(tmp_path, CIFAR10, monkeypatch)
    monkeypatch.setattr(CIFAR10, "tgz_md5", md5(archive + b"x"))
    serve({path_of(CIFAR10.url): archive})
    root = tmp_path / "data"

    result = get("cifar10_resnet18", root)

    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert "checksum mismatch" in result.output and str(root / CIFAR10.filename) in result.output
    assert "`asgl data get cifar10_resnet18`" in result.output
    assert list(root.iterdir()) == []  # no archive, no .part, no staging folder, nothing extracted


@pytest.mark.parametrize("ranges", [True, False], ids=["resumed", "restarted"])
def test_interrupted_download_then_rerun_completes(tmp_path, serve, monkeypatch, ranges):
    archive, arrays = cifar_archive(tmp_path, CIFAR10, monkeypatch)
    assert len(archive) > 2 * CUT
    path = path_of(CIFAR10.url)
    mirror = serve({path: archive}, ranges=ranges, cut={path: CUT})
    root = tmp_path / "data"

    first = get("cifar10_resnet18", root)

    assert first.exit_code == 2, first.output
    assert f"stopped at {CUT} of {len(archive)} bytes" in first.output
    part = root / f"{CIFAR10.filename}.part"
    assert [p.name for p in root.iterdir()] == [part.name]  # never under the final name, nothing extracted
    assert part.read_bytes() == archive[:CUT]

    second = get("cifar10_resnet18", root)

    assert second.exit_code == 0, second.output
    assert mirror.requests == [(path, None), (path, f"bytes={CUT}-")]
    assert ("md5 ok (resumed at" in second.output) == ranges
    assert (root / CIFAR10.filename).read_bytes() == archive
    assert not part.exists()
    bundle = build_data(load_recipe("cifar10_resnet18", [f"data.root={root}"]))
    np.testing.assert_array_equal(bundle.test.images, arrays["test"][0])


# ---------------------------------------------------------------- Tiny-ImageNet (hand-written metadata)


def test_get_tiny_imagenet_keeps_the_official_layout(tmp_path, serve, monkeypatch):
    write_tiny_imagenet(tmp_path / "src", classes=200, per_class=1, n_val=6)
    archive = zip_of(tmp_path / "src", ["tiny-imagenet-200"])
    url = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
    monkeypatch.setattr(dl, "TINY_IMAGENET", (url, md5(archive)))
    serve({"/tiny-imagenet-200.zip": archive})
    root = tmp_path / "data"

    result = get("tiny_imagenet_vgg13", root)

    assert result.exit_code == 0, result.output
    assert files_under(root / "tiny-imagenet-200") == files_under(tmp_path / "src" / "tiny-imagenet-200")
    bundle = build_data(load_recipe("tiny_imagenet_vgg13", [f"data.root={root}"]))
    assert len(bundle.test) == 6 and len(bundle.train) + len(bundle.val) == 200


# ---------------------------------------------------------------- event datasets (tonic's metadata)


def gesture_archives(src: Path, monkeypatch) -> dict[str, bytes]:
    import tonic.datasets

    g = tonic.datasets.DVSGesture
    write_gesture(src, {"train": [1, 2], "test": [24]}, events=50)
    served = {}
    for split in ("train", "test"):
        archive = tar_gz(src / "DVSGesture" / getattr(g, f"{split}_filename").removesuffix(".tar.gz"))
        monkeypatch.setattr(g, f"{split}_md5", md5(archive))
        served[path_of(getattr(g, f"{split}_url"))] = archive
    return served


def shd_archives(src: Path, monkeypatch) -> dict[str, bytes]:
    import tonic.datasets

    s = tonic.datasets.SHD
    write_shd(src, n_train=40, n_test=20, spikes=20)
    served = {}
    for split in ("train", "test"):
        zipped = getattr(s, f"{split}_zip")
        archive = zip_of(src / "SHD", [zipped.removesuffix(".zip")])
        monkeypatch.setattr(s, f"{split}_md5", md5(archive))
        served[path_of(s.base_url + zipped)] = archive
    return served


@pytest.mark.parametrize(
    "name, folder, archives, sizes",
    [("dvs_gesture", "DVSGesture", gesture_archives, (22, 11)), ("shd_rnn", "SHD", shd_archives, (40, 20))],
)
def test_get_event_dataset_in_tonics_layout(tmp_path, serve, monkeypatch, name, folder, archives, sizes):
    pytest.importorskip("tonic")
    mirror = serve(archives(tmp_path / "src", monkeypatch))
    root = tmp_path / "data"

    result = get(name, root)

    assert result.exit_code == 0, result.output
    assert len(mirror.requests) == 2
    extracted = {k: v for k, v in files_under(root / folder).items() if not k.endswith((".zip", ".tar.gz"))}
    assert extracted == files_under(tmp_path / "src" / folder)
    bundle = build_data(load_recipe(name, [f"data.root={root}"]))
    assert (len(bundle.train) + len(bundle.val), len(bundle.test)) == sizes


# ---------------------------------------------------------------- what is never downloaded


def test_loaders_and_data_check_never_download(tmp_path, serve):
    mirror = serve({})
    recipe = load_recipe("cifar10_resnet18", [f"data.root={tmp_path}"])
    with pytest.raises(DataMissingError, match="`asgl data get RECIPE`"):
        build_data(recipe)
    path = tmp_path / "my recipe.toml"
    from asgl.config import recipe_to_toml

    path.write_text(recipe_to_toml(recipe))
    check = CliRunner().invoke(app, ["data", "check", str(path)], env={"COLUMNS": "80"})
    assert check.exit_code == 1
    assert f"  asgl data get {path}" in check.output.splitlines()  # the command on a line of its own
    assert mirror.requests == [] and list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    "name, code, text",
    [
        ("digits_quick", 0, "nothing to download"),
        ("medleydb_audio", 2, "licensed"),
        ("dvs_cifar10_vggsnn", 2, "AEDAT 2.0"),
    ],
)
def test_datasets_that_are_not_fetched_say_why(tmp_path, serve, name, code, text):
    mirror = serve({})
    result = get(name, tmp_path) if name != "digits_quick" else CliRunner().invoke(app, ["data", "get", name])
    assert result.exit_code == code, result.output
    assert text in result.output and mirror.requests == []


def test_tonic_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tonic", None)
    with pytest.raises(dl.DownloadError, match=r'pip install "asgl\[events\]"'):
        dl.archives("dvs_gesture")


def test_mirror_replaces_scheme_and_host_only(monkeypatch):
    url = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert dl.mirrored(url) == url
    monkeypatch.setenv(dl.MIRROR_ENV, "http://127.0.0.1:8000")
    assert dl.mirrored(url) == "http://127.0.0.1:8000/~kriz/cifar-10-python.tar.gz"


@pytest.mark.parametrize(
    "name, hinted",
    [("cifar100_resnet18", True), ("tiny_imagenet_vgg13", True), ("dvs_gesture", True), ("shd_rnn", True),
     ("dvs_cifar10_vggsnn", False)],
)  # fmt: skip
def test_missing_data_error_ends_with_the_get_command_where_it_can_help(tmp_path, name, hinted):
    with pytest.raises(DataMissingError) as caught:
        build_data(load_recipe(name, [f"data.root={tmp_path}"]))
    last = str(caught.value).splitlines()[-1]
    assert last.endswith("download it with `asgl data get RECIPE`") == hinted, str(caught.value)
