"""Decoded images kept on disk: a second run reads the same pixels, any edited file is decoded
again, undecodable files stay reported, and a failed write leaves no cache behind."""

from __future__ import annotations

import shutil

import pytest
import torch

from headstart.data.decoded_cache import PIXELS, decode_images_cached
from headstart.data.images import decode_images


@pytest.fixture()
def folder(elpv, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(elpv, data)
    good = sorted((data / "defective").glob("*.png"))[0]
    (data / "defective" / "broken.png").write_bytes(good.read_bytes()[:300])
    return data


def paths_in(folder):
    return sorted(str(p) for p in folder.rglob("*.png"))


def test_second_call_reads_the_same_pixels_and_the_same_skips(folder, tmp_path):
    root, log = tmp_path / "cache", []
    first, first_skipped = decode_images_cached(paths_in(folder), 72, root, log.append)
    second, second_skipped = decode_images_cached(paths_in(folder), 72, root, log.append)
    fresh, fresh_skipped = decode_images(paths_in(folder), 72)
    assert "kept in" in log[0] and "reusing" in log[1]
    assert list(second) == list(fresh) and len(fresh) == 24
    assert all(torch.equal(second[p], fresh[p]) and second[p].dtype == torch.uint8 for p in fresh)
    assert [p for p, _ in second_skipped] == [p for p, _ in fresh_skipped] == [str(folder / "defective" / "broken.png")]
    assert "truncated" in second_skipped[0][1]
    assert len([d for d in root.iterdir() if not d.name.startswith(".")]) == 1


def test_an_edited_file_or_another_size_is_decoded_again(folder, tmp_path):
    root, log = tmp_path / "cache", []
    before, _ = decode_images_cached(paths_in(folder), 72, root, log.append)
    target = sorted((folder / "functional").glob("*.png"))[0]
    other = sorted((folder / "defective").glob("*.png"))[1]
    shutil.copyfile(other, target)  # same name, other pixels
    after, _ = decode_images_cached(paths_in(folder), 72, root, log.append)
    assert "reusing" not in log[1]
    assert torch.equal(after[str(target)], before[str(other)])
    decode_images_cached(paths_in(folder), 64, root, log.append)
    assert "reusing" not in log[2]
    assert len(list(root.iterdir())) == 3


def test_a_failed_write_warns_and_leaves_nothing_to_reuse(folder, tmp_path, monkeypatch):
    import headstart.data.decoded_cache as decoded_cache

    root, log = tmp_path / "cache", []

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(decoded_cache, "write_json", fail)  # pixels written, index not: a full disk
    images, _ = decode_images_cached(paths_in(folder), 72, root, log.append)
    assert len(images) == 24 and log[-1].startswith("warning: decoded images not kept on disk")
    assert "No space left on device" in log[-1] and list(root.iterdir()) == []
    monkeypatch.undo()
    images, _ = decode_images_cached(paths_in(folder), 72, root, log.append)
    assert len(images) == 24 and (next(root.iterdir()) / PIXELS).is_file() and "reusing" not in log[-1]
