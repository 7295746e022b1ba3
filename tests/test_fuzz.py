"""Fuzzing the parsers a user's files go through: a CSV manifest, a config mapping, a config file.
Whatever the input, the answer is a result or a one-line UserError, never another exception; a
manifest's samples exist on disk and every row it skips carries a reason."""

from __future__ import annotations

import shutil
import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from headstart.config import TrainConfig, config_from_dict, load_config_file
from headstart.data.sources import load_image_data, read_manifest
from headstart.errors import UserError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
KEYS = sorted(TrainConfig.__dataclass_fields__)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def one_line_error(error: UserError) -> None:
    assert str(error).strip() and "\n" not in str(error).strip()


@pytest.fixture(scope="module")
def folder(elpv):
    """Two real ELPV images in a folder, for manifests to name."""
    root = Path(tempfile.mkdtemp(prefix="fuzz-"))
    for name, label in (("a.png", "defective"), ("b.png", "functional")):
        shutil.copyfile(sorted((elpv / label).glob("*.png"))[0], root / name)
    yield root
    shutil.rmtree(root)


cell_text = st.sampled_from(
    [
        "a.png",
        "b.png",
        "missing.png",
        "",
        " ",
        "x",
        "train",
        "val",
        "test",
        "tEsT",
        "../a.png",
        "a.png ",
        "défaut",
        '"',
        ",",
        "\n",
        "\x00",
    ]
) | st.text(max_size=8)
rows = st.lists(st.lists(cell_text, min_size=0, max_size=4), max_size=8)
headers = st.sampled_from([["path", "label"], ["path", "label", "split"], ["label", "path"]]) | st.lists(
    st.sampled_from(["path", "label", "split", "PATH", " Label ", "other", ""]), min_size=0, max_size=4
)


@FUZZ
@given(
    header=headers,
    body=rows,
    raw=st.binary(max_size=60),
    mode=st.sampled_from(["rows", "rows", "rows", "bytes", "mixed"]),
)
def test_manifest_parser(folder, header, body, raw, mode):
    csv_path = folder / "manifest.csv"
    text = "\n".join(",".join(r) for r in [header, *body])
    data = {
        "rows": text.encode("utf-8", "surrogatepass"),
        "bytes": raw,
        "mixed": text.encode("utf-8", "surrogatepass")[:40] + raw,
    }[mode]
    csv_path.write_bytes(data)
    try:
        splits, skipped = read_manifest(csv_path)
    except UserError as e:
        one_line_error(e)
        event("manifest refused")
        return
    event(
        f"manifest read: {'with' if any(splits.values()) else 'no'} samples, {'with' if skipped else 'no'} skipped rows"
    )
    samples = [s for group in splits.values() for s in group]
    assert all(Path(s.path).is_file() for s in samples)
    assert all(reason for _, reason in skipped)
    try:
        load_image_data(csv_path, val_fraction=0.3, test_fraction=0.3)
    except UserError as e:
        one_line_error(e)


@FUZZ
@given(settings_dict=st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=10), json_values, max_size=5))
def test_config_from_any_mapping(settings_dict):
    try:
        config = config_from_dict(settings_dict)
    except UserError as e:
        one_line_error(e)
        event("config refused")
        return
    event("config accepted")
    assert isinstance(config, TrainConfig)


yaml_like = st.text(alphabet=string.printable + "é\u00a0", max_size=80) | st.builds(
    lambda pairs: "\n".join(f"{k}: {v}" for k, v in pairs),
    st.lists(
        st.tuples(
            st.sampled_from(KEYS),
            st.sampled_from(
                [
                    "1",
                    "-1",
                    "0.5",
                    "yes",
                    "nan",
                    "[1, 2]",
                    "{a: 1}",
                    "''",
                    "~",
                    "adamw",
                    "1e999",
                    "!!python/object:os.system",
                ]
            ),
        ),
        max_size=4,
    ),
)


@FUZZ
@given(text=yaml_like, suffix=st.sampled_from([".yaml", ".json", ".yml"]), raw=st.binary(max_size=20))
def test_config_file(tmp_path, text, suffix, raw):
    path = tmp_path / f"config{suffix}"
    path.write_bytes(text.encode("utf-8") + raw)
    try:
        values = load_config_file(path)
        config_from_dict(values, source=str(path))
        event("config file accepted")
    except UserError as e:
        one_line_error(e)
        event("config file refused")
