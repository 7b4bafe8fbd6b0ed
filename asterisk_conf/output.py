"""`write()`: put generated files in a folder, never clobbering one unless told, secrets 0640.

A file is created with its final mode (0640 for files holding a secret, 0644 otherwise) so a
secret is never readable by others, not even for a moment; an overwrite goes through a
temporary file in the same folder and an atomic rename, so Asterisk never reads half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

from asterisk_conf.errors import OutputExists
from asterisk_conf.generate import SECRET_FILES

SECRET_MODE = 0o640
PUBLIC_MODE = 0o644


def file_mode(name: str) -> int:
    """The mode `write()` gives file `name`."""
    return SECRET_MODE if name in SECRET_FILES else PUBLIC_MODE


def write(out_dir: Path, files: dict[str, str], *, overwrite: bool = False) -> list[Path]:
    """Write `files` (name -> text) into `out_dir`; return the paths written, in name order.

    Without `overwrite`, nothing is written when any of the files already exists.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in files:
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"{name!r}: expected a plain file name")
    targets = {name: out_dir / name for name in sorted(files)}
    if not overwrite:
        existing = [str(path) for path in targets.values() if path.exists()]
        if existing:
            raise OutputExists(
                f"would overwrite {', '.join(existing)}; pass overwrite to replace them"
            )
    written = []
    for name, path in targets.items():
        _write_one(path, files[name], file_mode(name), overwrite=overwrite)
        written.append(path)
    return written


def _write_one(path: Path, text: str, mode: int, *, overwrite: bool) -> None:
    data = text.encode("utf-8")
    if not overwrite:
        _create(path, data, mode, exclusive=True)
        return
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        _create(temp, data, mode, exclusive=False)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _create(path: Path, data: bytes, mode: int, *, exclusive: bool) -> None:
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError as err:
        raise OutputExists(f"would overwrite {path}; pass overwrite to replace it") from err
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed it; never widen beyond `mode`
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
