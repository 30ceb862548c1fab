"""Reading text files users pass in: UTF-8, and a file that is not says where and what to do."""

from __future__ import annotations

import os


def read_utf8(path: str | os.PathLike, what: str = "file") -> str:
    """The text of a UTF-8 file. Any other encoding (Latin-1, cp1252, ...) raises ValueError
    naming the file, the line and column of the first byte that is not UTF-8, and the fix."""
    data = open(path, "rb").read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(
            f"{what} {os.fspath(path)} is not UTF-8: line {line}, column {column} has the byte "
            f"0x{data[e.start]:02x}. Convert the file to UTF-8 (for Latin-1: "
            f"`iconv -f latin1 -t utf-8 IN > OUT`) and pass the converted file") from None


def utf8_lines(path: str | os.PathLike, what: str = "file"):
    """The lines of a UTF-8 file, streamed (line ends kept); a byte that is not UTF-8 raises
    ValueError as `read_utf8` does."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            yield from f
    except UnicodeDecodeError:
        read_utf8(path, what)  # raises the error naming the line and column
        raise
