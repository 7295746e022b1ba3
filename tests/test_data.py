"""Tests for headstart.data: real files on disk, real images (ELPV cells written to a tmp folder)."""

from __future__ import annotations

import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from headstart.data import (
    IMAGE_EXTENSIONS,
    DataSplits,
    Sample,
    decode_images,
    default_data_home,
    load_image_data,
    load_rgb,
    materialise_elpv,
    read_manifest,
    scan_image_folder,
    stratified_split,
)
from headstart.errors import BadImage, UserError

PER_CLASS = 12  # the `elpv` fixture in conftest.py writes this many cells per class


@pytest.fixture(scope="session")
def cells(elpv) -> dict[str, list[Path]]:
    return {label: sorted((elpv / label).glob("*.png")) for label in ("defective", "functional")}


def elpv_labels() -> tuple[list[str], np.ndarray]:
    """The package's own labels.csv, read directly (cheaper than load_dataset's full image load)."""
    import elpv_dataset

    csv = Path(elpv_dataset.__file__).parent / "data" / "labels.csv"
    data = np.genfromtxt(csv, dtype=["|S19", "<f8", "|S4"], names=["path", "probability", "type"])
    return list(np.char.decode(data["path"])), data["probability"]


def make_class_tree(root: Path, files_per_class: dict[str, list[Path]]) -> Path:
    for label, files in files_per_class.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, root / label / f.name)
    return root


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height; opening it reads only the header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) + chunk(b"IEND", b"")
    )
    return path


def bad_reason(path) -> str:
    with pytest.raises(BadImage) as caught:
        load_rgb(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: ")
    return message


# ---------------------------------------------------------------- ELPV


def test_materialise_writes_the_user_layout(elpv, cells):
    assert elpv.name == f"elpv-{PER_CLASS}"
    assert sorted(p.name for p in elpv.iterdir()) == [".about-elpv.txt", "defective", "functional"]
    assert [len(cells["defective"]), len(cells["functional"])] == [PER_CLASS, PER_CLASS]
    assert [p.name for p in elpv.parent.iterdir()] == [elpv.name]  # no temporary folder left behind
    readme = (elpv / ".about-elpv.txt").read_text()
    assert "CC BY-NC-SA 4.0" in readme and "NON-COMMERCIAL" in readme
    assert f"defective {PER_CLASS}, functional {PER_CLASS}" in readme


def test_materialise_labels_and_pixels_match_the_package(cells):
    import elpv_dataset

    names, probabilities = elpv_labels()
    package_data = Path(elpv_dataset.__file__).parent / "data"
    for label, files in cells.items():
        for f in files:
            index = int(f.stem.split("_")[1])
            assert (probabilities[index] >= 0.5) == (label == "defective")
    first = cells["defective"][0]
    with Image.open(first) as ours, Image.open(package_data / names[int(first.stem.split("_")[1])]) as theirs:
        assert ours.size == (300, 300)
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))


def test_materialise_is_idempotent(elpv):
    before = {p: p.stat().st_mtime_ns for p in elpv.rglob("*")}
    started = time.perf_counter()
    again = materialise_elpv(elpv.parent, per_class=PER_CLASS, seed=0)
    assert again == elpv
    assert time.perf_counter() - started < 0.5  # returned the existing copy without reloading ELPV
    assert {p: p.stat().st_mtime_ns for p in elpv.rglob("*")} == before


def test_materialise_refuses_an_incomplete_folder(tmp_path):
    (tmp_path / "elpv-3").mkdir()
    with pytest.raises(UserError, match="no .about-elpv.txt"):
        materialise_elpv(tmp_path, per_class=3)


def test_default_data_home(monkeypatch, tmp_path):
    monkeypatch.setenv("HEADSTART_HOME", str(tmp_path))
    assert default_data_home() == tmp_path / "datasets"
    monkeypatch.delenv("HEADSTART_HOME")
    assert default_data_home() == Path.home() / ".cache" / "headstart" / "datasets"


# ---------------------------------------------------------------- load_rgb


def test_load_rgb_on_an_elpv_cell(cells):
    path = cells["functional"][0]
    im = load_rgb(path)
    assert im.mode == "RGB" and im.size == (300, 300)
    rgb = np.asarray(im)
    with Image.open(path) as grey:
        assert grey.mode == "L"
        assert all(np.array_equal(rgb[..., c], np.asarray(grey)) for c in range(3))


def test_load_truncated_images_setting_is_off():
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "empty file (0 bytes)" in bad_reason(path)


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n")
    assert "not an image" in bad_reason(path)


def test_missing_file(tmp_path):
    assert "cannot read file" in bad_reason(tmp_path / "gone.png")


def test_truncated_png(tmp_path, cells):
    data = cells["defective"][0].read_bytes()
    path = tmp_path / "half.png"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated: the file ends before the image data does" in bad_reason(path)


def test_truncated_jpeg(tmp_path, cells):
    source = tmp_path / "cell.jpg"
    Image.open(cells["defective"][0]).convert("RGB").save(source, quality=90)
    data = source.read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated: the file ends before the image data does" in bad_reason(path)


def test_png_with_a_jpg_name_is_read_by_its_contents(tmp_path, cells):
    path = tmp_path / "cell.jpg"
    path.write_bytes(cells["defective"][0].read_bytes())
    assert np.array_equal(np.asarray(load_rgb(path)), np.asarray(load_rgb(cells["defective"][0])))


def test_corrupt_png_data(tmp_path, cells):
    data = bytearray(cells["defective"][0].read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)  # zeroes in the compressed stream; the chunk CRC no longer matches
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    assert "cannot decode image" in bad_reason(path)


def test_decompression_bomb_over_twice_the_limit(tmp_path):
    path = png_header_only(tmp_path / "bomb.png", 20_000, 20_000)
    assert 20_000 * 20_000 > 2 * Image.MAX_IMAGE_PIXELS
    assert "decompression bomb" in bad_reason(path)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_between_one_and_two_times_the_limit(tmp_path):
    side = 10_000
    assert Image.MAX_IMAGE_PIXELS < side * side < 2 * Image.MAX_IMAGE_PIXELS
    path = png_header_only(tmp_path / "big.png", side, side)
    message = bad_reason(path)
    assert "decompression bomb" in message and "10000x10000" in message


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257 * 100, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as im:
        assert im.mode in ("I;16", "I")  # the file really is 16-bit
    rgb = np.asarray(load_rgb(path)).astype(int)
    assert rgb.shape == (1, 4, 3)
    assert list(rgb[0, :, 0]) == pytest.approx([0, 100, 128, 255], abs=1)
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_thirty_two_bit_modes(tmp_path):
    floats = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)).save(floats)
    assert list(np.asarray(load_rgb(floats))[0, :, 1]) == pytest.approx([0, 128, 255], abs=1)
    ints = tmp_path / "int32.tif"
    Image.fromarray(np.array([[-1000, 0, 1000]], dtype=np.int32)).save(ints)
    assert list(np.asarray(load_rgb(ints))[0, :, 1]) == pytest.approx([0, 128, 255], abs=1)


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # no cyan, full magenta+yellow = red
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    r, g, b = np.asarray(load_rgb(path))[8, 8].astype(int)
    assert r > 230 and g < 30 and b < 30


def test_palette_png_with_transparency_goes_on_white(tmp_path):
    im = Image.new("P", (4, 2), 0)
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue
    im.paste(1, (2, 0, 4, 2))
    path = tmp_path / "palette.png"
    im.save(path, transparency=0)  # red is the transparent index
    rgb = np.asarray(load_rgb(path))
    assert rgb[0, 0].tolist() == [255, 255, 255]
    assert rgb[0, 3].tolist() == [0, 0, 255]


def test_rgba_and_la_go_on_white(tmp_path):
    pixels = np.array([[[255, 0, 0, 0], [0, 255, 0, 255], [0, 0, 0, 128]]], dtype=np.uint8)
    path = tmp_path / "alpha.png"
    Image.fromarray(pixels).save(path)
    rgb = np.asarray(load_rgb(path)).astype(int)
    assert rgb[0, 0].tolist() == [255, 255, 255]
    assert rgb[0, 1].tolist() == [0, 255, 0]
    assert rgb[0, 2].tolist() == pytest.approx([127, 127, 127], abs=1)
    grey = tmp_path / "grey_alpha.png"
    im = Image.new("LA", (2, 1), (0, 0))
    im.putpixel((1, 0), (0, 255))
    im.save(grey)
    assert np.asarray(load_rgb(grey))[0].tolist() == [[255, 255, 255], [0, 0, 0]]


def test_one_bit_image(tmp_path):
    path = tmp_path / "mask.bmp"
    im = Image.new("1", (2, 1), 0)
    im.putpixel((1, 0), 1)
    im.save(path)
    assert np.asarray(load_rgb(path))[0].tolist() == [[0, 0, 0], [255, 255, 255]]


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((2, 4, 3), dtype=np.uint8)
    pixels[0, 0] = [255, 0, 0]  # red in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "rotated.png"
    Image.fromarray(pixels).save(path, exif=exif)
    rgb = np.asarray(load_rgb(path))
    assert rgb.shape == (4, 2, 3)
    assert rgb[0, 1].tolist() == [255, 0, 0]  # top-left went to top-right


# ---------------------------------------------------------------- decode_images


def test_decode_images_keeps_good_ones_and_lists_bad_ones(tmp_path, cells):
    wide = tmp_path / "wide.png"
    Image.new("RGB", (60, 30), (10, 200, 30)).save(wide)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("hello")
    good = [str(p) for p in cells["defective"][:3]] + [str(wide)]
    paths = [good[0], str(empty), good[1], str(text), good[2], good[3]]

    images, skipped = decode_images(paths, short_side=20, workers=2)

    assert list(images) == good
    assert [p for p, _ in skipped] == [str(empty), str(text)]
    assert "empty file" in skipped[0][1] and "not an image" in skipped[1][1]
    assert not skipped[0][1].startswith(str(empty))  # the reason alone, the path is beside it
    assert images[good[0]].dtype == torch.uint8 and images[good[0]].shape == (3, 20, 20)
    assert images[str(wide)].shape == (3, 20, 40)
    assert images[str(wide)][:, 5, 5].tolist() == [10, 200, 30]  # a flat colour stays flat after resizing


def test_decode_images_is_deterministic_across_thread_counts(cells):
    paths = [str(p) for p in cells["functional"]]
    one, _ = decode_images(paths, short_side=64, workers=1)
    four, _ = decode_images(list(reversed(paths)), short_side=64, workers=4)
    assert sorted(one) == sorted(four)
    assert all(torch.equal(one[p], four[p]) for p in paths)
    assert list(four) == list(reversed(paths))


# ---------------------------------------------------------------- scanning folders


def test_scan_layout_a(tmp_path, cells):
    root = make_class_tree(
        tmp_path / "data", {"defective": cells["defective"][:3], "functional": cells["functional"][:2]}
    )
    nested = root / "functional" / "batch2"
    nested.mkdir()
    shutil.copy(cells["functional"][2], nested / "cell.PNG")  # upper-case extension counts
    (root / "functional" / "notes.txt").write_text("x")
    (root / "functional" / ".DS_Store").write_bytes(b"x")
    (root / ".thumbnails" / "x").mkdir(parents=True)
    shutil.copy(cells["functional"][3], root / ".thumbnails" / "x" / "hidden.png")
    shutil.copy(cells["functional"][4], root / "loose.png")
    os.symlink("..", root / "defective" / "loop")  # defective/loop -> data/ -> defective/loop -> ...
    (root / "empty_class").mkdir()

    splits, skipped = scan_image_folder(root)

    assert list(splits) == ["all"]
    labels = [s.label for s in splits["all"]]
    assert labels.count("defective") == 3 and labels.count("functional") == 3
    assert str(nested / "cell.PNG") in [s.path for s in splits["all"]]
    reasons = dict(skipped)
    assert reasons[str(root / "functional" / "notes.txt")] == "not an image file (extension .txt)"
    assert "not in a class folder" in reasons[str(root / "loose.png")]
    assert "class folder has no images" in reasons[str(root / "empty_class")]
    assert reasons[str(root / "defective" / "loop")] == (
        f"symbolic link loop (links to {root.resolve()}, which contains the link); not followed"
    )
    assert not any(".DS_Store" in p or ".thumbnails" in p for p in reasons)
    assert len(skipped) == 4


def test_scan_follows_links_but_enters_each_folder_once(tmp_path, cells):
    root = make_class_tree(tmp_path / "data", {"a": cells["defective"][:2], "b": cells["functional"][:2]})
    elsewhere = make_class_tree(tmp_path / "elsewhere", {"more": cells["defective"][2:4]}) / "more"
    os.symlink(elsewhere, root / "a" / "link1")
    os.symlink(elsewhere, root / "a" / "link2")
    os.symlink(root / "a", root / "a" / "self")
    splits, skipped = scan_image_folder(root)
    assert len(splits["all"]) == 6
    assert sum(s.path.startswith(str(root / "a" / "link1")) for s in splits["all"]) == 2
    real = elsewhere.resolve()
    assert skipped == [
        (str(root / "a" / "link2"), f"folder already scanned (symbolic link to {real}); not entered again"),
        (
            str(root / "a" / "self"),
            f"symbolic link loop (links to {(root / 'a').resolve()}, which contains the link); not followed",
        ),
    ]


def test_scan_class_folder_linking_to_the_data_folder(tmp_path, cells):
    root = make_class_tree(tmp_path / "data", {"a": cells["defective"][:2], "b": cells["functional"][:2]})
    os.symlink(root, root / "c")
    splits, skipped = scan_image_folder(root)
    assert sorted({s.label for s in splits["all"]}) == ["a", "b"] and len(splits["all"]) == 4
    assert [(p, r.split(" (")[0]) for p, r in skipped] == [(str(root / "c"), "symbolic link loop")]


def test_scan_layout_b(tmp_path, cells):
    root = tmp_path / "data"
    make_class_tree(root / "train", {"defective": cells["defective"][:4], "functional": cells["functional"][:4]})
    make_class_tree(root / "valid", {"defective": cells["defective"][4:5], "functional": cells["functional"][4:5]})
    make_class_tree(root / "test", {"defective": cells["defective"][5:7], "functional": cells["functional"][5:7]})
    (root / "train" / "readme.md").write_text("x")

    splits, skipped = scan_image_folder(root)

    assert sorted(splits) == ["test", "train", "val"]
    assert [len(splits[k]) for k in ("train", "val", "test")] == [8, 2, 4]
    assert {s.label for s in splits["val"]} == {"defective", "functional"}
    assert skipped == [
        (str(root / "train" / "readme.md"), f"not in a class folder (images go in {root / 'train'}/<class>/)")
    ]


def test_scan_layout_b_with_a_stray_folder(tmp_path, cells):
    make_class_tree(tmp_path / "train", {"a": cells["defective"][:2]})
    (tmp_path / "cats").mkdir()
    with pytest.raises(UserError, match="also has: cats/"):
        scan_image_folder(tmp_path)


def test_image_extensions():
    assert {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"} == set(IMAGE_EXTENSIONS)


# ---------------------------------------------------------------- manifests


def test_manifest(tmp_path, cells):
    images = make_class_tree(tmp_path / "img", {"d": cells["defective"][:2], "f": cells["functional"][:2]})
    d0, d1 = sorted((images / "d").iterdir())
    f0, f1 = sorted((images / "f").iterdir())
    manifest = tmp_path / "labels.csv"
    manifest.write_text(
        "path,label,split\n"
        f"img/d/{d0.name}, defective ,train\n"
        "img/d/nothing_here.png,defective,train\n"
        f"img/f/{f0.name},functional,train\n"
        f"img/d/{d1.name},defective,val\n"
        f"img/f/{f1.name},,test\n",
        encoding="utf-8",
    )

    splits, skipped = read_manifest(manifest)

    assert splits["train"] == [Sample(str(d0), "defective"), Sample(str(f0), "functional")]
    assert splits["val"] == [Sample(str(d1), "defective")]
    assert "test" not in splits
    assert skipped == [
        (str(tmp_path / "img/d/nothing_here.png"), f"listed in {manifest} line 3 but missing"),
        (str(f1), f"listed in {manifest} line 6 with an empty label"),
    ]


def test_manifest_without_split_column(tmp_path, cells):
    shutil.copy(cells["defective"][0], tmp_path / "a.png")
    (tmp_path / "m.csv").write_text("label,path\ncrack,a.png\n")
    splits, skipped = read_manifest(tmp_path / "m.csv")
    assert splits == {"all": [Sample(str(tmp_path / "a.png"), "crack")]} and skipped == []


def test_manifest_missing_column(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("file,label\na.png,x\n")
    with pytest.raises(UserError) as caught:
        read_manifest(manifest)
    assert str(caught.value) == (
        f"{manifest} has no 'path' column; found columns: 'file', 'label' (need path, label, optionally split)"
    )


def test_manifest_not_utf8(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("path,label\ncaf\u00e9.png,x\n".encode("latin-1"))
    with pytest.raises(UserError) as caught:
        read_manifest(manifest)
    assert str(manifest) in str(caught.value) and "not UTF-8" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_manifest_with_bom_and_bad_split(tmp_path, cells):
    shutil.copy(cells["defective"][0], tmp_path / "a.png")
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("path,label,split\na.png,x,training\n".encode("utf-8-sig"))
    with pytest.raises(UserError, match="line 2: split is 'training'"):
        read_manifest(manifest)


def test_labels_differing_in_case(tmp_path, cells):
    for i, f in enumerate(cells["defective"][:4]):
        shutil.copy(f, tmp_path / f"{i}.png")
    (tmp_path / "m.csv").write_text("path,label\n0.png,Cat\n1.png,cat \n2.png,dog\n3.png,dog\n")
    with pytest.raises(UserError, match="labels 'Cat' and 'cat' .* differ only in case"):
        load_image_data(tmp_path / "m.csv")


def test_folder_labels_differing_in_spaces(tmp_path, cells):
    make_class_tree(
        tmp_path, {"cat": cells["defective"][:2], "cat ": cells["defective"][2:4], "dog": cells["functional"][:2]}
    )
    with pytest.raises(UserError, match="labels 'cat' and 'cat ' "):
        load_image_data(tmp_path)


# ---------------------------------------------------------------- stratified_split


def synthetic(counts: dict[str, int]) -> list[Sample]:
    return [Sample(f"/data/{label}/{i:03d}.png", label) for label, n in counts.items() for i in range(n)]


def test_stratified_split_is_deterministic():
    samples = synthetic({"a": 50, "b": 30})
    assert stratified_split(samples, 0.2, seed=1) == stratified_split(list(reversed(samples)), 0.2, seed=1)
    assert stratified_split(samples, 0.2, seed=1)[1] != stratified_split(samples, 0.2, seed=2)[1]


def test_stratified_split_proportions():
    samples = synthetic({"a": 100, "b": 30, "c": 5})
    kept, held = stratified_split(samples, 0.2, seed=0)
    count = lambda group, label: sum(s.label == label for s in group)  # noqa: E731
    assert [count(held, c) for c in "abc"] == [20, 6, 1]
    assert [count(kept, c) for c in "abc"] == [80, 24, 4]
    assert sorted(s.path for s in kept + held) == sorted(s.path for s in samples)
    assert [s.path for s in kept] == sorted(s.path for s in kept)
    assert [s.path for s in held] == sorted(s.path for s in held)


def test_stratified_split_every_class_guarantees():
    samples = synthetic({"tiny": 2, "small": 3, "single": 1})
    kept, held = stratified_split(samples, 0.05, seed=0)  # round(0.05 * n) would hold none
    assert sorted(s.label for s in held) == ["small", "tiny"]
    assert "single" in {s.label for s in kept}
    kept, held = stratified_split(samples, 0.9, seed=0)  # round(0.9 * n) would hold all
    assert sorted(s.label for s in kept) == ["single", "small", "tiny"]
    assert stratified_split(samples, 0.0, seed=0) == (sorted(samples, key=lambda s: s.path), [])


def test_stratified_split_rejects_bad_fraction():
    with pytest.raises(UserError, match="fraction"):
        stratified_split(synthetic({"a": 3}), 1.0, seed=0)


# ---------------------------------------------------------------- load_image_data


def test_load_image_data_stratified(elpv):
    splits = load_image_data(elpv, val_fraction=0.1, test_fraction=0.2, seed=3)
    assert isinstance(splits, DataSplits)
    assert splits.classes == ["defective", "functional"]
    assert splits.split_source == "stratified" and splits.seed == 3
    summary = splits.to_dict()
    # per class: test round(0.2 * 12) = 2, val round(0.1 * 10) = 1, train 9
    assert summary["counts"]["test"] == {"total": 4, "per_class": {"defective": 2, "functional": 2}}
    assert summary["counts"]["val"] == {"total": 2, "per_class": {"defective": 1, "functional": 1}}
    assert summary["counts"]["train"] == {"total": 18, "per_class": {"defective": 9, "functional": 9}}
    assert summary["skipped"] == []  # the hidden .about-elpv.txt is not part of the data
    paths = [s.path for s in splits.all_samples()]
    assert len(set(paths)) == len(paths) == 2 * PER_CLASS
    assert load_image_data(elpv, seed=3) == splits
    assert load_image_data(elpv, seed=4).test != splits.test
    assert load_image_data(elpv, test_fraction=0.0).notes[-1] == "no test split: report on val"


def test_load_image_data_given_folders_without_val(tmp_path, cells):
    make_class_tree(tmp_path / "train", {"d": cells["defective"][:5], "f": cells["functional"][:5]})
    make_class_tree(tmp_path / "test", {"d": cells["defective"][5:6], "f": cells["functional"][5:6]})
    splits = load_image_data(tmp_path, val_fraction=0.2)
    assert splits.split_source == "folders"
    assert [len(splits.train), len(splits.val), len(splits.test)] == [8, 2, 2]
    assert splits.notes == ["val carved from train (0.2 of each class)"]


def test_load_image_data_class_missing_from_train(tmp_path, cells):
    make_class_tree(tmp_path / "train", {"d": cells["defective"][:2], "f": cells["functional"][:2]})
    make_class_tree(tmp_path / "val", {"d": cells["defective"][2:3], "x": cells["functional"][2:3]})
    with pytest.raises(UserError, match="class 'x' is in the val split .* no training images"):
        load_image_data(tmp_path)


def test_load_image_data_missing_folder(tmp_path):
    with pytest.raises(UserError, match="^data folder not found: .*nowhere$"):
        load_image_data(tmp_path / "nowhere")


def test_load_image_data_one_class(tmp_path, cells):
    make_class_tree(tmp_path, {"defective": cells["defective"][:3]})
    with pytest.raises(UserError) as caught:
        load_image_data(tmp_path)
    assert str(caught.value) == f"found only one class 'defective' in {tmp_path}; need at least two"


def test_load_image_data_class_with_one_image(tmp_path, cells):
    make_class_tree(tmp_path, {"defective": cells["defective"][:3], "functional": cells["functional"][:1]})
    with pytest.raises(UserError, match="class 'functional' has only 1 image"):
        load_image_data(tmp_path)


def test_load_image_data_no_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(UserError, match="no images found in .*notes.txt: not an image file"):
        load_image_data(tmp_path)


# ---------------------------------------------------------------- augmentation


def test_quarter_turns_give_every_turn_of_the_crop_and_follow_the_seed(cells):
    from headstart.backbones import Preprocessing
    from headstart.data.pipeline import train_transform

    prep = Preprocessing((0.5,) * 3, (0.5,) * 3, input_size=64, resize_size=64)
    images, _ = decode_images([str(cells["defective"][0])], prep.resize_size)
    image = next(iter(images.values()))
    # full-area crops of a square image: what is left to draw is the turn
    turning = train_transform(prep, crop_scale=1.0, hflip=False, vflip=False, quarter_turns=True)
    upright = train_transform(prep, crop_scale=1.0, hflip=False, vflip=False)
    base = upright(image)
    turns = [torch.rot90(base, k, dims=(-2, -1)) for k in range(4)]
    assert all(not torch.equal(turns[0], t) for t in turns[1:])  # a real cell is not symmetric under turns

    seen = set()
    for seed in range(40):
        torch.manual_seed(seed)
        out = turning(image)
        matches = [k for k, t in enumerate(turns) if torch.equal(out, t)]
        assert len(matches) == 1
        seen.add(matches[0])
        torch.manual_seed(seed)
        assert torch.equal(turning(image), out)
    assert seen == {0, 1, 2, 3}
    assert "RandomQuarterTurn" in repr(turning) and "RandomQuarterTurn" not in repr(upright)
