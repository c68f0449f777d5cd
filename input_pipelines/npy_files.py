"""Header-only checks of 2-D .npy files and of the members of an uncompressed .npz, and
where each array's data starts, so that readers can memory-map them without loading them.

Every problem is a UserError of one line: the file, what is wrong (expected vs found), and
the caller's fix. A truncated file is caught here, from its size, before any training.
"""

import os
import struct
import zipfile

import numpy as np

from common.errors import UserError

_ZIP_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")  # PKZIP local file header, 30 bytes
_ZIP_LOCAL_MAGIC = 0x04034B50


def _bad(path: str, problem: str, fix: str) -> UserError:
    return UserError(f"{path}: {problem}; {fix}")


def _npy_header(f, path: str, fix: str, where: str = "") -> tuple[tuple[int, ...], np.dtype,
                                                                  int]:
    """(shape, dtype, offset of the data) of the .npy starting at f's position."""
    start = f.tell()
    try:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, fortran_order, dtype = read(f)
    except (ValueError, OSError, EOFError) as e:
        detail = " ".join(str(e).split())[:120]
        raise _bad(path, f"unreadable .npy header{where} at byte {start} ({detail})",
                   fix) from e
    if fortran_order:
        # Rows of a Fortran-order array are scattered across the file: a batch would touch
        # every page of the day.
        raise _bad(path, f"{where.strip() or 'array'} is stored in Fortran order, expected C",
                   fix)
    return shape, dtype, f.tell()


def _check_array(path, found_shape, found_dtype, want_shape, want_dtype, what, fix) -> None:
    if found_dtype != np.dtype(want_dtype) or tuple(found_shape) != want_shape:
        want = str(want_shape).replace("None", "N")
        raise _bad(path, f"{what} should be {np.dtype(want_dtype).name} {want}, found "
                         f"{found_dtype.name} {tuple(found_shape)}", fix)


def _check_size(path: str, end: int, file_size: int, what: str, fix: str) -> None:
    if file_size < end:
        raise _bad(path, f"truncated: the header of {what} promises {end} bytes, the file "
                         f"has {file_size}", fix)


def open_npy(path: str, columns: int, dtype, rows: int | None, what: str,
             fix: str) -> tuple[int, int]:
    """(rows, data offset) of a 2-D .npy, after checking its header and size; rows=None
    takes the file's."""
    with open(path, "rb") as f:
        shape, found_dtype, offset = _npy_header(f, path, fix)
    if len(shape) == 2 and shape[1] == columns and rows is None:
        rows = shape[0]
    _check_array(path, shape, found_dtype, (rows, columns), dtype, what, fix)
    _check_size(path, offset + rows * columns * np.dtype(dtype).itemsize,
                os.path.getsize(path), what, fix)
    return rows, offset


def open_npz_members(path: str, rows: int, hotness: tuple[int, ...],
                     fix: str) -> tuple[int, ...]:
    """Data offsets of int32 members 0.npy .. {K-1}.npy, member k of shape (rows, hotness[k]),
    after checking each one's header and size."""
    file_size = os.path.getsize(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        # The zip directory sits at the end of the file, so a truncated npz lands here.
        raise _bad(path, f"not a readable zip archive ({e}): truncated or corrupt", fix) from e
    with archive, open(path, "rb") as f:
        members = {info.filename: info for info in archive.infolist()}
        want = [f"{k}.npy" for k in range(len(hotness))]
        missing = [name for name in want if name not in members]
        extra = sorted(set(members) - set(want))
        if missing or extra:
            found = ", ".join(part for part in (missing and f"missing {missing}",
                                                extra and f"unexpected {extra}") if part)
            raise _bad(path, f"should hold members 0.npy .. {len(want) - 1}.npy (one per "
                             f"sparse feature), found {found}", fix)
        offsets = []
        for k, name in enumerate(want):
            info = members[name]
            if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
                raise _bad(path, f"member {name} is compressed or encrypted, so it cannot be "
                                 "memory-mapped", "rewrite it uncompressed (np.savez, not "
                                 "np.savez_compressed) or pass the right --data_dir")
            f.seek(info.header_offset)
            local = f.read(_ZIP_LOCAL_HEADER.size)
            fields = _ZIP_LOCAL_HEADER.unpack(local) if len(local) == 30 else (0,) * 11
            if fields[0] != _ZIP_LOCAL_MAGIC:
                raise _bad(path, f"member {name} has no zip local header at byte "
                                 f"{info.header_offset}", fix)
            # The local header's name and extra field may differ in length from the central
            # directory's copy (zip64 sizes), so only the local one says where data starts.
            member_start = info.header_offset + _ZIP_LOCAL_HEADER.size + fields[9] + fields[10]
            f.seek(member_start)
            shape, dtype, offset = _npy_header(f, path, fix, f" of member {name}")
            _check_array(path, shape, dtype, (rows, hotness[k]), np.int32,
                         f"member {name} (sparse feature {k})", fix)
            end = offset + rows * hotness[k] * 4
            if end > member_start + info.file_size:
                raise _bad(path, f"member {name} holds {info.file_size} bytes, its header "
                                 f"promises {end - member_start}", fix)
            _check_size(path, end, file_size, f"member {name}", fix)
            offsets.append(offset)
    return tuple(offsets)
