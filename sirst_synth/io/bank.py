"""The noise bank on disk: HDF5, patches of any size, full provenance.

Patches differ in size across images, so pixels are stored flat (``pixels``, uint8) with
per-patch ``offset``, ``height`` and ``width``; per patch also ``source`` (index into the
``sources`` list of stems), grid ``row``/``col``, ``mean`` and ``var``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from sirst_synth import __version__
from sirst_synth.errors import DataError
from sirst_synth.io.files import write_bytes_atomic

FORMAT = "sirst-synth-noise-bank"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class BankIndex:
    """Everything about a bank but its pixels: small, read in full by generate and online
    synthesis to draw patches; the pixels are read one patch at a time (``BankReader``)."""

    path: Path
    sources: tuple[str, ...]
    source: np.ndarray
    row: np.ndarray
    col: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    offset: np.ndarray
    height: np.ndarray
    width: np.ndarray
    attrs: dict

    @property
    def size(self) -> int:
        return int(self.source.size)


def write_bank(
    path: Path,
    patches: list[np.ndarray],
    sources: list[str],
    source: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    mean: np.ndarray,
    var: np.ndarray,
    attrs: dict,
) -> None:
    """Build the HDF5 file in memory, then write its bytes atomically: HDF5 never touches the
    disk itself, so a full disk is the same one-line error as for every other file (HDF5 can
    crash the process when its own writes fail)."""
    sizes = np.array([p.size for p in patches], dtype=np.int64)
    offset = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64) if patches else sizes
    name = f"{Path(path).name}.in-memory"
    with h5py.File(name, "w", driver="core", backing_store=False) as f:
        f.attrs["format"] = FORMAT
        f.attrs["format_version"] = FORMAT_VERSION
        f.attrs["tool_version"] = __version__
        for k, v in attrs.items():
            f.attrs[k] = v
        flat = np.concatenate([p.ravel() for p in patches]) if patches else np.zeros(0, np.uint8)
        f.create_dataset(
            "pixels", data=flat.astype(np.uint8), dtype="u1", chunks=True if flat.size else None
        )
        f.create_dataset("offset", data=offset, dtype="i8")
        f.create_dataset(
            "height", data=np.array([p.shape[0] for p in patches], np.int32), dtype="i4"
        )
        f.create_dataset(
            "width", data=np.array([p.shape[1] for p in patches], np.int32), dtype="i4"
        )
        f.create_dataset("source", data=np.asarray(source, np.int32), dtype="i4")
        f.create_dataset("row", data=np.asarray(row, np.int16), dtype="i2")
        f.create_dataset("col", data=np.asarray(col, np.int16), dtype="i2")
        f.create_dataset("mean", data=np.asarray(mean, np.float64), dtype="f8")
        f.create_dataset("var", data=np.asarray(var, np.float64), dtype="f8")
        f.create_dataset(
            "sources", data=np.array(sources, dtype=object), dtype=h5py.string_dtype("utf-8")
        )
        f.flush()
        image = f.id.get_file_image()
    write_bytes_atomic(Path(path), image, durable=True)


def read_bank_index(path: Path) -> BankIndex:
    """Open and check a bank; a truncated file or another tool's HDF5 is a data error."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: noise bank not found; run `sirst-synth build-noise-bank` first")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != FORMAT:
                raise DataError(
                    f"{path}: not a sirst-synth noise bank; build one with `sirst-synth build-noise-bank`"
                )
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            idx = BankIndex(
                path=path,
                sources=tuple(s.decode() if isinstance(s, bytes) else s for s in f["sources"][()]),
                source=f["source"][()],
                row=f["row"][()],
                col=f["col"][()],
                mean=f["mean"][()],
                var=f["var"][()],
                offset=f["offset"][()],
                height=f["height"][()],
                width=f["width"][()],
                attrs=attrs,
            )
            sizes = idx.height.astype(np.int64) * idx.width
            n = idx.source.size
            consistent = (
                all(a.size == n for a in (idx.row, idx.col, idx.offset, idx.height, idx.width))
                and f["pixels"].shape[0] == int(sizes.sum())
                and np.array_equal(idx.offset, np.concatenate([[0], np.cumsum(sizes)[:-1]])[:n])
                and (n == 0 or (idx.source.min() >= 0 and idx.source.max() < len(idx.sources)))
            )
            if not consistent:
                raise DataError(
                    f"{path}: noise bank is inconsistent (offsets, sizes or sources); rebuild it"
                )
            missing = [k for k in ("sigma", "mu", "grid", "fingerprint") if k not in attrs]
            if missing:
                raise DataError(
                    f"{path}: noise bank lacks its {', '.join(missing)} attribute(s); rebuild it "
                    "with build-noise-bank"
                )
    except DataError:
        raise
    except (OSError, KeyError, ValueError):
        raise DataError(
            f"{path}: noise bank is truncated or unreadable; rebuild it with build-noise-bank"
        ) from None
    return idx


class BankReader:
    """Reads single patches on demand (each worker process opens its own handle)."""

    def __init__(self, index: BankIndex):
        self.index = index
        self._file: h5py.File | None = None

    def patch(self, i: int) -> np.ndarray:
        if self._file is None:
            self._file = h5py.File(self.index.path, "r")
        o, h, w = int(self.index.offset[i]), int(self.index.height[i]), int(self.index.width[i])
        try:
            flat = self._file["pixels"][o : o + h * w]
        except OSError:
            raise DataError(f"{self.index.path}: noise bank is truncated; rebuild it") from None
        return np.asarray(flat, dtype=np.uint8).reshape(h, w)


def bank_range(bank: BankIndex) -> tuple[float, float] | None:
    """The range a bank's images were read with (``build-noise-bank --range train``): the
    way generate and online synthesis read the same images."""
    if "range_lo" not in bank.attrs:
        return None
    return (float(bank.attrs["range_lo"]), float(bank.attrs["range_hi"]))


def check_bank_source(
    bank: BankIndex, ds_root: Path, train_fingerprint: str, foreign_flag: str | None = None
) -> None:
    """A bank is built from the training files it is used with (its fingerprint): noise drawn
    from other images is another experiment. ``foreign_flag`` names the flag that allows it,
    where the command has one."""
    if bank.attrs.get("fingerprint") != train_fingerprint:
        allow = f" (or pass {foreign_flag})" if foreign_flag else ""
        raise DataError(
            f"{bank.path}: bank was built from other training files than {ds_root}; rebuild it "
            f"with build-noise-bank from this dataset{allow}"
        )
