"""Uploaded files, staged safely on disk before they become a stored dataset.

An upload is many files (each with the relative path the browser gave it: `images/a.jpg`, `labels/a.txt`) or
zip archives of them. Every name is checked before anything is written: an absolute path, a `..` part, a
backslash or a drive letter is refused, naming the file, and so is a zip member that would land outside the
staging folder. Sizes are bounded per file and in all (a zip is counted by what it unpacks to, so a small archive
cannot fill the disk). Each file is written to a partial name and renamed once whole, so an upload cut off
halfway leaves no half file to be read as an image. The staging folder is then read as any dataset folder
(`cardmetry dataset import`), and removed.
"""

from __future__ import annotations

import shutil
import uuid
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

from cardmetry.data.formats import dataset_root
from cardmetry.data.validation import validate
from cardmetry.store.datasets import ImportResult, check_name, import_dataset
from cardmetry.store.home import Home

MAX_FILE_BYTES = 200 * 1024**2  # one file, or one zip member unpacked
MAX_UPLOAD_BYTES = 4 * 1024**3  # everything one upload unpacks to
MAX_FILES = 100_000  # files in one upload, zip members included
CHUNK = 1024**2


class UploadError(ValueError):
    """A file of the upload is refused; the message names it. `too_large` tells a size limit from a bad name."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass
class UploadResult:
    stored: ImportResult
    files: int  # files received (zip members counted one by one)
    problems: list[dict[str, object]]  # the validation report: file, line, severity, message


def safe_relative(name: str) -> PurePosixPath:
    """The relative path an uploaded file or zip member names, or UploadError naming it."""
    if not name or "\\" in name or "\x00" in name or (len(name) > 1 and name[1] == ":"):
        raise UploadError(f"{name!r}: not a plain relative file name")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("..", "") for part in path.parts) or name.endswith("/"):
        raise UploadError(f"{name!r}: a path outside the upload (absolute, or with '..')")
    return path


class Staging:
    """A fresh folder under HOME/uploads/ that files are written into, with the limits above."""

    def __init__(self, home: Home, max_file: int = MAX_FILE_BYTES, max_total: int = MAX_UPLOAD_BYTES) -> None:
        self.root = home.root / "uploads" / uuid.uuid4().hex
        self.root.mkdir(parents=True)
        self.max_file, self.max_total = max_file, max_total
        self.total, self.files = 0, 0

    def relative_message(self, message: str) -> str:
        """`message` with the staging folder's path taken out: a file is named as the upload named it, and the
        answer does not show where the server keeps its files."""
        return message.replace(f"{self.root}/", "").replace(str(self.root), "the upload")

    def add(self, name: str, stream: BinaryIO) -> None:
        """One uploaded file; a zip archive (by its name) is unpacked in its place."""
        relative = safe_relative(name)
        try:
            if relative.suffix.lower() == ".zip":
                self._unzip(name, stream)
            else:
                self._write(relative, stream, name)
        except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError) as error:
            raise UploadError(f"{name}: a damaged or unsupported zip archive ({error})") from None
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise UploadError(f"{name}: a file and a folder of the same name") from None

    def _write(self, relative: PurePosixPath, stream: BinaryIO, shown: str) -> None:
        target = self.root / relative
        if target.exists():
            raise UploadError(f"{shown}: given twice in one upload")
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.files >= MAX_FILES:
            raise UploadError(f"{shown}: over {MAX_FILES} files in one upload")
        partial = self.root.parent / f"{self.root.name}.{self.files}.part"  # outside the upload: no name of its
        size = 0
        try:
            with partial.open("wb") as out:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    self.total += len(chunk)
                    if size > self.max_file or self.total > self.max_total:
                        limit = self.max_file if size > self.max_file else self.max_total
                        raise UploadError(f"{shown}: over the upload limit of {limit // 1024**2} MB", too_large=True)
                    out.write(chunk)
        except BaseException:  # cut off, too large, or a damaged zip member: no half file is left
            partial.unlink(missing_ok=True)
            raise
        partial.replace(target)
        self.files += 1

    def _unzip(self, name: str, stream: BinaryIO) -> None:
        archive_path = self.root.parent / f"{self.root.name}.zip"
        try:
            with archive_path.open("wb") as out:
                shutil.copyfileobj(stream, out, CHUNK)
            try:
                archive = zipfile.ZipFile(archive_path)
            except zipfile.BadZipFile:
                raise UploadError(f"{name}: not a readable zip archive") from None
            with archive:
                members = [m for m in archive.infolist() if not m.is_dir()]
                if len(members) + self.files > MAX_FILES:
                    raise UploadError(f"{name}: over {MAX_FILES} files in one upload")
                for member in members:  # every name and size checked before anything is unpacked
                    safe_relative(member.filename)
                    if member.file_size > self.max_file:
                        raise UploadError(f"{name}: {member.filename} unpacks to over "
                                          f"{self.max_file // 1024**2} MB", too_large=True)
                if sum(m.file_size for m in members) + self.total > self.max_total:
                    raise UploadError(f"{name}: unpacks to over {self.max_total // 1024**2} MB", too_large=True)
                for member in members:
                    with archive.open(member) as content:
                        self._write(safe_relative(member.filename), content, f"{name}: {member.filename}")
        finally:
            archive_path.unlink(missing_ok=True)

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def store_upload(home: Home, name: str, files: Iterable[tuple[str, BinaryIO]]) -> UploadResult:
    """Stage the files, read them as a dataset folder, store it as dataset `name` (a new version when its
    content is new); UploadError for a refused file, ValueError for a bad name or a folder that is no dataset.
    The same image given twice, under any names, is stored and counted once."""
    check_name(name)
    staging = Staging(home)
    try:
        for filename, stream in files:
            staging.add(filename, stream)
        if staging.files == 0:
            raise UploadError("the upload holds no files")
        try:
            report = validate(staging.root)
            stored = import_dataset(home, name, report.dataset, dataset_root(staging.root), report.problems)
        except UploadError:
            raise
        except ValueError as error:  # a folder that is no dataset: named as the upload, not as the staging path
            raise ValueError(staging.relative_message(str(error))) from None
        return UploadResult(stored, staging.files, [problem.as_json() for problem in report.problems])
    finally:
        staging.remove()
