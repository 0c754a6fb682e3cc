"""Output shards (`p3m.runs.shards`) and input lists (`p3m.io.lists`): inputs that do not fit a folder."""

from __future__ import annotations

from pathlib import Path, PurePath

import pytest

from p3m.errors import ConfigError, DatasetError
from p3m.io import read_path_list
from p3m.runs.shards import SHARD_MAP_NAME, plan_shards, read_shard_map


def test_shards_hold_at_most_n_and_keep_their_keys_across_runs(tmp_path: Path) -> None:
    first = plan_shards(tmp_path, ["a", "b", "c", "d", "e"], size=2)
    assert first == {"a": "00000", "b": "00000", "c": "00001", "d": "00001", "e": "00002"}
    # The same inputs again: the same shards, nothing appended.
    size = (tmp_path / SHARD_MAP_NAME).stat().st_size
    assert plan_shards(tmp_path, ["a", "b", "c", "d", "e"], size=2) == first
    assert (tmp_path / SHARD_MAP_NAME).stat().st_size == size
    # New inputs in front and in between: the earlier keys stay, new ones fill the room left.
    second = plan_shards(tmp_path, ["new1", "a", "new2", "b", "c", "d", "e", "new3"], size=2)
    assert {key: second[key] for key in first} == first
    assert [second[key] for key in ("new1", "new2", "new3")] == ["00002", "00003", "00003"]
    assert read_shard_map(tmp_path) == second


def test_a_lost_shard_map_is_rebuilt_from_the_files_and_a_torn_line_is_skipped(tmp_path: Path) -> None:
    def outputs(key: str) -> list[PurePath]:
        return [PurePath(f"{key}_alpha.png")]

    assert plan_shards(tmp_path, ["a", "b", "c"], 1, outputs) == {"a": "00000", "b": "00001", "c": "00002"}
    (tmp_path / "00002").mkdir()
    (tmp_path / "00002" / "c_alpha.png").write_bytes(b"png")  # only c was written
    (tmp_path / SHARD_MAP_NAME).unlink()
    # Without the record, c is found where it is; a and b, never written, are placed afresh.
    assert plan_shards(tmp_path, ["b", "a", "c"], 1, outputs) == {"b": "00000", "a": "00001", "c": "00002"}
    with open(tmp_path / SHARD_MAP_NAME, "a") as handle:
        handle.write('{"key": "d", "sha')  # a writer killed mid-line
    assert plan_shards(tmp_path, ["a", "d"], 1)["d"] == "00003"
    assert read_shard_map(tmp_path)["d"] == "00003"
    with pytest.raises(ConfigError):
        plan_shards(tmp_path, ["a"], 0)


def test_input_lists_text_csv_and_parquet(tmp_path: Path) -> None:
    (tmp_path / "lists").mkdir()
    text = tmp_path / "lists" / "inputs.txt"
    text.write_text("# a comment\n\nimages/a.jpg\n  /data/b.png  \n")
    assert read_path_list(text) == [tmp_path / "lists" / "images" / "a.jpg", Path("/data/b.png")]
    with_header = tmp_path / "with_header.csv"
    with_header.write_text("id,Path,label\n1,x/a.jpg,cat\n2,/abs/b.jpg,dog\n")
    assert read_path_list(with_header) == [tmp_path / "x" / "a.jpg", Path("/abs/b.jpg")]
    bare = tmp_path / "bare.csv"
    bare.write_text("a.jpg,3\nb.jpg,4\n")
    assert read_path_list(bare) == [tmp_path / "a.jpg", tmp_path / "b.jpg"]
    pa = pytest.importorskip("pyarrow", reason='Parquet lists need pyarrow (pip install "p3m[scale]")')
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"n": [1, 2], "image": ["p/1.png", "/q/2.png"]}), tmp_path / "inputs.parquet")
    assert read_path_list(tmp_path / "inputs.parquet") == [tmp_path / "p" / "1.png", Path("/q/2.png")]
    pq.write_table(pa.table({"n": [1], "m": [2]}), tmp_path / "numbers.parquet")
    with pytest.raises(DatasetError, match="no path column"):
        read_path_list(tmp_path / "numbers.parquet")


def test_input_list_errors_name_the_list(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="input list not found"):
        read_path_list(tmp_path / "nope.txt")
    urls = tmp_path / "urls.txt"
    urls.write_text("s3://bucket/a.jpg\n")
    with pytest.raises(DatasetError, match="URL") as error:
        read_path_list(urls)
    assert str(urls) in str(error.value)
