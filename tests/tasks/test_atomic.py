"""Atomic writes: complete old or new content, never a partial file, no temp leftovers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from disco.tasks.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_together,
    is_temp_file,
)


def test_writes_and_replaces(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"one")
    assert target.read_bytes() == b"one"
    atomic_write_bytes(target, bytearray(b"two, longer"))
    assert target.read_bytes() == b"two, longer"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_json(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write_json(target, {"a": [1, 2.5, None], "é": "ü"})
    assert json.loads(target.read_bytes()) == {"a": [1, 2.5, None], "é": "ü"}


def test_unserializable_json_leaves_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(ValueError):
        atomic_write_json(target, {"v": float("nan")})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"v": object()})
    assert json.loads(target.read_bytes()) == {"v": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_failure_during_write_keeps_old_content_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "f.bin"
    atomic_write_bytes(target, b"old")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("disco.tasks.atomic.os.fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_failure_before_rename_never_creates_the_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "new.bin"

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr("disco.tasks.atomic.os.replace", broken_replace)
    with pytest.raises(OSError, match="simulated"):
        atomic_write_bytes(target, b"data")
    assert os.listdir(tmp_path) == []


def test_temp_file_names_are_recognisable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        seen.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr("disco.tasks.atomic.os.replace", spy)
    atomic_write_bytes(tmp_path / "model.json", b"{}")
    assert len(seen) == 1 and is_temp_file(seen[0]) and seen[0].startswith(".model.json.")
    assert not is_temp_file("model.json") and not is_temp_file(".hidden")


def test_files_written_together_are_all_renamed_and_a_failure_leaves_nothing(
    tmp_path: Path,
) -> None:
    order: list[str] = []

    def content(name: str, data: bytes) -> Callable[[], bytes]:
        def make() -> bytes:
            order.append(name)
            return data

        return make

    (tmp_path / "b").write_bytes(b"old")
    atomic_write_together(tmp_path, [("a", content("a", b"one")), ("b", content("b", b"two"))])
    assert order == ["a", "b"]
    assert (tmp_path / "a").read_bytes() == b"one" and (tmp_path / "b").read_bytes() == b"two"

    def broken() -> bytes:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_together(tmp_path, [("c", content("c", b"three")), ("b", broken)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary files
    assert (tmp_path / "b").read_bytes() == b"two" and not (tmp_path / "c").exists()
