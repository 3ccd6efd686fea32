"""Atomic writes, hashing, and the PNG codec settings shared by every writer."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import cv2
import numpy as np
from PIL import Image

from sirst_synth.convert import gray_values, to_binary_mask, to_gray_u8
from sirst_synth.errors import SKIP_HINT, DataError, UsageError

#: One PNG compression level for every file the project writes (speed vs size; stable bytes).
PNG_LEVEL = 3
#: Marker in the name of every temporary file; `verify` reports strays that carry it.
TMP_MARK = ".sirst-tmp"


def tmp_name(path: Path) -> Path:
    """The temporary sibling a file is written to before it is renamed into place."""
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


#: errno values that mean "the disk (or a quota, or a file-size limit) is full".
NO_SPACE = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


def write_problem(path: Path, exc: OSError) -> str:
    """One line on why ``path`` could not be written, with the fix that fits the errno."""
    if exc.errno in NO_SPACE:
        return (
            f"{path}: cannot write, no space left ({exc.strerror}); free space on the disk "
            "or write to another folder (finished files are kept: generate --resume continues)"
        )
    if exc.errno == errno.ENAMETOOLONG:
        longest = max((len(part.encode()) for part in Path(path).parts), default=0)
        return (
            f"{path}: file name too long (a name of {longest} bytes; most file systems allow "
            "255); use shorter file names or a shorter output folder"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{path}: not writable ({exc.strerror}); choose a folder you can write to"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return f"{path}: its folder does not exist ({exc.strerror}); create it or choose another"
    return f"{path}: cannot write ({exc.strerror}); check the folder exists and is writable"


def _write_error(path: Path, exc: OSError) -> DataError:
    return DataError(write_problem(path, exc))


def make_folders(root: Path, subs: tuple[str, ...], what: str) -> None:
    """``root`` and its ``subs``, or one line saying why not (a usage error: the fix is the
    path the user gave)."""
    for sub in subs:
        try:
            (root / sub).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{write_problem(root / sub, exc)} ({what})") from None


class AtomicWriter:
    """The handle ``atomic_file`` gives: a failed write names this file, whatever else the
    block writes at the same time."""

    def __init__(self, fh: BinaryIO, path: Path):
        self._fh, self._path = fh, path

    def write(self, data: bytes) -> None:
        try:
            self._fh.write(data)
        except OSError as exc:
            raise _write_error(self._path, exc) from None


@contextlib.contextmanager
def atomic_file(path: Path, durable: bool = False) -> Iterator[AtomicWriter]:
    """A file written under a temporary name in the same folder and renamed into place when
    the block ends: never a half file in place, and streamed, so it may exceed memory.

    Every file the project writes goes through here, so a full disk or an unwritable folder is
    one data error naming the file, with the temporary file removed (``--resume`` continues).
    An error of the block itself leaves as it came, with the temporary file removed.
    """
    path = Path(path)
    tmp = tmp_name(path)
    try:
        fh = open(tmp, "wb")  # noqa: SIM115 - closed below, on every path
    except OSError as exc:
        raise _write_error(path, exc) from None
    try:
        yield AtomicWriter(fh, path)
    except BaseException:  # the block's own error (a failed write already names its file)
        _discard(fh, tmp)
        raise
    try:
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
        fh.close()
        os.replace(tmp, path)
    except OSError as exc:
        _discard(fh, tmp)
        raise _write_error(path, exc) from None


def _discard(fh: BinaryIO, tmp: Path) -> None:
    with contextlib.suppress(OSError):
        fh.close()
    with contextlib.suppress(OSError):
        tmp.unlink()


def write_bytes_atomic(path: Path, data: bytes, durable: bool = False) -> None:
    with atomic_file(path, durable) as fh:
        fh.write(data)


def write_text_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode("utf-8"), durable=True)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes through OpenCV at the project's fixed level (byte-identical across runs)."""
    ok, buf = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not ok:
        raise DataError("OpenCV could not encode a PNG")
    return buf.tobytes()


def decode_raw(path: Path) -> np.ndarray:
    """Decode any image file OpenCV reads, unchanged (bit depth and channels kept)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the dataset folder") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}); check permissions") from None
    return decode_bytes(data, path)


def decode_bytes(data: np.ndarray | bytes, path: Path) -> np.ndarray:
    """Decode a file's bytes (``path`` names it in errors). A PNG without its end chunk or a
    JPEG without its end marker is truncated: refused before the decoder, which would print
    its own warning and (JPEG) fill the missing rows with gray."""
    data = np.frombuffer(data, dtype=np.uint8) if isinstance(data, bytes) else data
    head, tail = data[:8].tobytes(), data[-64:].tobytes()
    truncated = (head.startswith(b"\x89PNG") and b"IEND" not in tail) or (
        head.startswith(b"\xff\xd8") and not tail.rstrip(b"\x00").endswith(b"\xff\xd9")
    )
    arr = None if truncated or not data.size else cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if arr is None or arr.size == 0:
        raise DataError(
            f"{path}: not a decodable image (truncated or not an image); replace the file"
        )
    return arr


def read_converted(
    path: Path,
    convert: Callable[[np.ndarray], np.ndarray],
    fix: str = "",
    decode: Callable[[Path], np.ndarray] | None = None,
) -> np.ndarray:
    """Decode (its errors already name the file; ``decode_raw`` unless another reader is
    given), then convert, naming the file (and the fix, if any) on failure."""
    raw = (decode or decode_raw)(path)
    try:
        return convert(raw)
    except DataError as exc:
        raise DataError(f"{path}: {exc}" + (f"; {fix}" if fix else "")) from None


def read_gray(path: Path, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """An image as one 8-bit channel (see `sirst_synth.convert`; ``value_range`` maps
    16-bit and float images)."""
    return read_converted(
        path,
        lambda raw: to_gray_u8(raw, value_range),
        "convert the file to gray, RGB(A) or 16-bit PNG, or pass --range train",
    )


def value_range_of(paths: list[Path]) -> tuple[float, float] | None:
    """(lo, hi) of the gray values of every image among ``paths`` that is not 8-bit: the
    range ``--range train`` maps to 0..255. None when all are 8-bit (nothing to map)."""
    lo, hi = math.inf, -math.inf
    for path in paths:
        arr = read_converted(path, gray_values, "convert the file to gray, RGB(A) or 16-bit PNG")
        if arr.dtype in (np.uint8, np.bool_) or not arr.size:
            continue
        if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
            raise DataError(f"{path}: image holds NaN or infinity; replace the file")
        lo, hi = min(lo, float(arr.min())), max(hi, float(arr.max()))
    if lo == math.inf:
        return None
    if hi <= lo:
        raise DataError(
            f"--range train: every training image holds the one value {lo:g}; there is no range "
            "to map"
        )
    return (lo, hi)


def read_mask(path: Path) -> np.ndarray:
    """A mask as 0/1 uint8 (any non-zero pixel is target)."""
    return read_converted(path, to_binary_mask, "masks must be single-image PNGs")


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except FileNotFoundError:
        raise DataError(f"{path}: file not found; check the dataset folder") from None
    except Exception:
        raise DataError(
            f"{path}: not a decodable image (truncated or not an image); replace the file"
        ) from None
    return h, w


def fingerprint(root: Path, paths: list[Path], hashes: dict[Path, str] | None = None) -> str:
    """sha256 over (relative path, content hash) of the given files: identifies a source set.

    ``hashes`` caches file hashes between fingerprints of overlapping sets (each file is read once).
    """
    hashes = {} if hashes is None else hashes
    h = hashlib.sha256()
    for p in paths:
        if p not in hashes:
            hashes[p] = sha256_file(p)
        rel = os.path.relpath(p, root).replace(os.sep, "/")
        h.update(rel.encode("utf-8") + b"\0" + hashes[p].encode("ascii") + b"\n")
    return h.hexdigest()


def check_same_size(mask_path: Path, mask_hw: tuple[int, int], image_hw: tuple[int, int]) -> None:
    """Labels are never resized: a mask of another size than its image is a data error."""
    if tuple(mask_hw) != tuple(image_hw):
        raise DataError(
            f"{mask_path}: mask is {mask_hw[1]}x{mask_hw[0]} but the image is "
            f"{image_hw[1]}x{image_hw[0]}; fix the mask{SKIP_HINT}"
        )


def inside(child: Path, parent: Path) -> bool:
    """Whether ``child`` is ``parent`` or lies under it (symlinks resolved)."""
    try:
        Path(child).resolve().relative_to(Path(parent).resolve())
        return True
    except ValueError:
        return False


def check_folder_path(path: Path, flag: str, purpose: str) -> None:
    """A folder output named by an existing file is a usage error, worded one way everywhere."""
    if Path(path).exists() and not Path(path).is_dir():
        raise UsageError(f"{flag} {path} is a file; give a folder {purpose}")


def source_folders(root: Path) -> list[Path]:
    """Every folder a dataset's files really lie in (symlinks followed): its root, its images/
    and masks/ (a link to another folder is that folder), and the folder of each file that is
    itself a link. An output must lie in none of them, or it would write into the source."""
    root = Path(root)
    folders = {root.resolve()}
    for sub in ("images", "masks"):
        d = root / sub
        if d.is_dir():
            folders.add(d.resolve())
            folders.update(f.resolve().parent for f in d.iterdir() if f.is_symlink())
    return sorted(folders)


def check_output_file(
    path: Path,
    flag: str,
    overwrite: bool,
    inputs: list[Path | None] = (),
    outputs: list[tuple[str, Path | None]] = (),
) -> None:
    """An output file the user named: never inside something the command reads, never one of
    the command's other outputs (or inside its output folder), never a symbolic link (it would
    be replaced, not written through), never over an existing file unless ``--overwrite``, and
    its folder must exist. Checked before any work."""
    path = Path(path)
    for root in inputs:
        if root is not None and inside(path, root):
            raise UsageError(
                f"{flag} {path} lies inside {root}, which this command reads; write elsewhere"
            )
    for other_flag, other in outputs:
        if other is not None and (inside(path, other) or path.resolve() == Path(other).resolve()):
            raise UsageError(
                f"{flag} {path} is also written by {other_flag} {other}; choose another file"
            )
    if path.is_symlink():
        raise UsageError(
            f"{flag} {path} is a symbolic link; give the file it points to, or a new name"
        )
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise UsageError(
            f"{flag} {path} exists; pass --overwrite to replace it or choose another name"
        )
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {path}: folder {path.parent} does not exist; create it first")
