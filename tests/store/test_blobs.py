"""Content-addressed blobs."""

from __future__ import annotations

from pathlib import Path

import pytest

from cardmetry.store.blobs import BlobStore, sha256_of


def test_same_content_is_stored_once(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jpg", tmp_path / "copy of a.JPG"
    a.write_bytes(b"card bytes")
    b.write_bytes(b"card bytes")
    store = BlobStore(tmp_path / "blobs")
    sha_a, path_a, new_a = store.put(a)
    sha_b, path_b, new_b = store.put(b)
    assert (new_a, new_b) == (True, False)
    assert sha_a == sha_b == sha256_of(a)
    assert path_a == path_b and path_a.read_bytes() == b"card bytes"
    assert [p.name for p in (tmp_path / "blobs").rglob("*") if p.is_file()] == [path_a.name]
    assert not list((tmp_path / "blobs").rglob("*.partial"))


@pytest.mark.parametrize(
    "digest",
    [
        "../" + "a" * 61,  # a path, not a digest
        "A" * 64,  # upper case is not how digests are stored
        "a" * 63,  # too short
    ],
)
def test_path_for_rejects_what_is_not_a_digest(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ValueError, match="not a sha256 digest"):
        BlobStore(tmp_path).path_for(digest)


def test_the_same_bytes_under_another_suffix_are_one_blob(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"same")
    (tmp_path / "a.jpeg").write_bytes(b"same")
    store = BlobStore(tmp_path / "blobs")
    assert store.put(tmp_path / "a.jpg")[2] is True
    assert store.put(tmp_path / "a.jpeg")[2] is False
