"""meta/checksums.json (sha256 per file) and parquet page checksums: corrupted files never load silently."""

import hashlib
import json
import logging
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

import wall_data as wd


def _values(ds):
    return {k: ds.arrays[k].copy() for k in ds.value_keys}


def _same(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def test_checksums_are_written_for_every_file_and_verified(toy, tmp_path):
    man = json.loads((toy / "meta/checksums.json").read_text())
    files = sorted(
        p.relative_to(toy).as_posix() for p in toy.rglob("*") if p.is_file() and p.name != "checksums.json"
    )
    assert sorted(man["files"]) == files and "pending" not in man
    for rel, digest in man["files"].items():
        assert hashlib.sha256((toy / rel).read_bytes()).hexdigest() == digest
    flipped = tmp_path / "flipped"
    shutil.copytree(toy, flipped)
    mp4 = next((flipped / "videos").rglob("*.mp4"))
    raw = bytearray(mp4.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    mp4.write_bytes(bytes(raw))
    ds = wd.LeRobotDataset(flipped)
    with pytest.raises(
        wd.DatasetFormatError, match=r"videos/observation.images.cam/chunk-000/file-000.mp4: sha256 differs"
    ):
        ds[0]
    wd.LeRobotDataset(flipped, verify_checksums=False)[0]  # the explicit opt-out reads it


def test_parquet_page_checksums_catch_a_flip_inside_a_data_page(tmp_path, make_toy):
    root = make_toy(tmp_path / "p", video=False, image=False)
    (root / "meta/checksums.json").unlink(missing_ok=True)  # only the page CRCs are left to notice
    f = next((root / "data").rglob("*.parquet"))
    names = pq.ParquetFile(f).schema_arrow.names
    col = pq.ParquetFile(f).metadata.row_group(0).column(names.index("action"))
    raw = bytearray(f.read_bytes())
    raw[col.data_page_offset + col.total_compressed_size - 3] ^= 0x04  # a byte of the page's values
    f.write_bytes(bytes(raw))
    with pytest.raises(wd.DatasetFormatError, match=r"corrupt parquet file .*file-000.parquet: .*CRC"):
        wd.LeRobotDataset(root)


@pytest.mark.parametrize("verify_checksums", [True, False])
def test_single_bit_flips_never_change_values_silently(tmp_path, make_toy, verify_checksums):
    root = make_toy(tmp_path / "src", video=False, image=False)
    ref = _values(wd.LeRobotDataset(root))
    f = next((root / "data").rglob("*.parquet"))
    raw = f.read_bytes()
    rng = np.random.default_rng(0)
    detected = silent = harmless = 0
    for n, pos in enumerate(rng.integers(0, len(raw) * 8, size=200)):
        bad = bytearray(raw)
        bad[pos // 8] ^= 1 << (pos % 8)
        f.write_bytes(bytes(bad))
        try:
            got = _values(wd.LeRobotDataset(root, verify_checksums=verify_checksums))
        except wd.DatasetFormatError:
            detected += 1
            continue
        if _same(got, ref):
            harmless += 1  # e.g. a flip in footer statistics the reader does not use
        else:
            silent += 1
    f.write_bytes(raw)
    logging.getLogger(__name__).info(
        "verify=%s: detected %d/200, harmless %d, silent %d", verify_checksums, detected, harmless, silent
    )
    assert silent == 0 and detected + harmless == 200
    if verify_checksums:
        assert detected == 200  # sha256 of the file: every flip is refused, naming the file
    else:
        assert detected >= 120  # page CRCs alone (measured 144/200; the rest hit footer stats nobody reads)
