"""Byte-level reading of exports: encoding detection (UTF-8, BOM, Shift-JIS, cp1252/Latin-1, UTF-16),
clear errors for binary or undecodable files, and the CSV line feed that can recover a
broken record.
"""

from __future__ import annotations

import codecs
import re
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ticket_triage.ingest.rows import IngestError

_MAGIC = {b"PAR1": "Parquet", b"\x1f\x8b": "gzip", b"PK\x03\x04": "zip", b"%PDF": "PDF"}
_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13)) + b"\x7f"
_CP1252_UNDEFINED = b"\x81\x8d\x8f\x90\x9d"


def _decode_guard(rows: Iterator, file: Path, enc: str) -> Iterator:
    """Turn a decode failure half-way through a file (a wrong ``encoding=``) into an
    IngestError that says what to do."""
    try:
        yield from rows
    except UnicodeError as e:
        raise IngestError(f"{file.name}: cannot decode as {enc} ({e}); pass the file's real "
                          f"encoding as encoding=..., or leave encoding unset to detect it, or "
                          f"convert it: `iconv -f ENCODING -t utf-8 {file.name}`") from None


# --------------------------------------------------------------------------- encodings


def _detect_encoding(path: Path, declared: str | None = None) -> tuple[str, str | None]:
    """Return (encoding, warning or None). UTF-8 (BOM stripped) first, then cp1252/Latin-1
    when the bytes look like Latin-1 text; anything else raises IngestError."""
    name = path.name
    with open(path, "rb") as f:
        head = f.read(65536)
    if declared is not None:
        if codecs.lookup(declared).name == "utf-8" and head.startswith(codecs.BOM_UTF8):
            return "utf-8-sig", None
        return declared, None
    how = (f"Convert it with `iconv -f <ENCODING> -t utf-8 {name} > {path.stem}.utf8"
           f"{path.suffix}` or pass encoding='<ENCODING>'.")
    for bom, enc in ((codecs.BOM_UTF32_LE, "UTF-32LE"), (codecs.BOM_UTF32_BE, "UTF-32BE"),
                     (codecs.BOM_UTF16_LE, "UTF-16LE"), (codecs.BOM_UTF16_BE, "UTF-16BE")):
        if head.startswith(bom):
            raise IngestError(
                f"{name} is {enc} (byte-order mark {bom.hex(' ')}), not UTF-8; tried utf-8. "
                + how.replace("<ENCODING>", enc.replace("LE", "").replace("BE", "")
                              if enc.startswith("UTF-16") else enc))
    for magic, kind in _MAGIC.items():
        if head.startswith(magic):
            raise IngestError(f"{name} is a {kind} file, not text; "
                              + ("read it with fmt='parquet'." if kind == "Parquet"
                                 else f"extract it first ({kind}) and ingest the text export."))
    if b"\x00" in head:
        even, odd = head[0::2].count(0), head[1::2].count(0)
        if max(even, odd) > 0.3 * (len(head) / 2):
            guess = "UTF-16LE" if odd > even else "UTF-16BE"
            raise IngestError(
                f"{name} looks like {guess} without a byte-order mark (every other byte is "
                f"NUL), not UTF-8; tried utf-8, and cp1252/latin-1 do not fit NUL bytes. "
                + how.replace("<ENCODING>", guess))
        controls = len(head) - len(head.translate(None, _CONTROL_BYTES))
        if controls > max(8, len(head) // 100):
            raise IngestError(f"{name} contains NUL bytes: it is binary, not a text export; tried "
                              "utf-8 and cp1252/latin-1. Export the tickets as UTF-8 CSV/JSON.")
        # a few stray NUL bytes in a text export: the rows holding them are rejected (nul_byte)
    enc = "utf-8-sig" if head.startswith(codecs.BOM_UTF8) else "utf-8"
    bad = _first_utf8_error(path)
    if bad is None:
        return enc, None
    offset, byte = bad
    cjk = _cjk_encoding(path)
    if cjk is not None:
        return cjk, (f"{name}: not valid UTF-8 (byte 0x{byte:02x} at offset {offset}); the bytes "
                     f"are Japanese text in {cjk}, read as such. Convert the file to avoid this "
                     f"guess: `iconv -f {cjk.upper()} -t utf-8 {name}`.")
    stats = _byte_stats(path)
    total, high, control, undefined = stats
    if control == 0 and total and high / total <= 0.25:
        enc = "latin-1" if undefined else "cp1252"
        return enc, (f"{name}: not valid UTF-8 (byte 0x{byte:02x} at offset {offset}); read as "
                     f"{enc}. If accents look wrong, pass encoding=... or convert the file: "
                     f"`iconv -f {enc.upper()} -t utf-8 {name}`.")
    raise IngestError(
        f"{name} is not UTF-8 (byte 0x{byte:02x} at offset {offset}) and does not look like "
        f"cp1252/latin-1 text either ({control} control bytes, {high} of {total} bytes >= 0x80). "
        + f"Find its encoding (`file -i {name}`), then convert it with `iconv -f ENCODING -t "
        f"utf-8 {name} > {path.stem}.utf8{path.suffix}` or pass encoding='ENCODING'.")


_JAPANESE = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff66-\uff9f\u3000-\u303f\uff01-\uff5e]")


_KANA = re.compile("[\u3040-\u30ff]")
_HALFWIDTH = re.compile("[\uff61-\uff9f]")


def _cjk_encoding(path: Path, limit: int = 64 << 20) -> str | None:
    """"shift_jis" or "cp932" when the whole file decodes strictly as it and most of its
    non-ASCII characters are Japanese (cp1252 text almost never decodes as Shift-JIS: its
    accented letters are invalid lead/trail byte pairs there)."""
    if path.stat().st_size > limit:
        return None
    data = path.read_bytes()
    for enc in ("shift_jis", "cp932"):
        try:
            text = data.decode(enc)
        except UnicodeDecodeError:
            continue
        non_ascii = sum(1 for c in text if ord(c) > 127)
        japanese = len(_JAPANESE.findall(text))
        kana = len(_KANA.findall(text))  # Chinese GBK bytes decode to kanji, hardly ever to kana
        halfwidth = len(_HALFWIDTH.findall(text))  # GBK/Big5 bytes A1-DF read as half-width kana
        if non_ascii and japanese >= 0.6 * non_ascii and kana >= 0.1 * japanese and halfwidth <= 0.2 * non_ascii:
            return enc
    return None


def _first_utf8_error(path: Path) -> tuple[int, int] | None:
    """Offset and value of the first byte that is not valid UTF-8, or None."""
    dec = codecs.getincrementaldecoder("utf-8")("strict")
    pos = 0  # bytes fed to the decoder so far
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            pending = dec.getstate()[0]
            try:
                dec.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                data = pending + chunk
                return pos - len(pending) + e.start, data[e.start]
            if not chunk:
                return None
            pos += len(chunk)


def _byte_stats(path: Path) -> tuple[int, int, int, bool]:
    """(bytes, bytes >= 0x80, C0 control bytes, has cp1252-undefined bytes) of the file."""
    total = high = control = 0
    undefined = False
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            total += len(chunk)
            ascii_only = chunk.translate(None, bytes(range(128, 256)))
            high += len(chunk) - len(ascii_only)
            control += len(ascii_only) - len(ascii_only.translate(None, _CONTROL_BYTES))
            undefined = undefined or any(b in chunk for b in
                                         (bytes([c]) for c in _CP1252_UNDEFINED))
    return total, high, control, undefined


# --------------------------------------------------------------------------- readers
# Each reader yields (position, values | None, raw, problem | None); problem set means the row
# is malformed. ``values`` maps canonical fields to source values.


class _LineFeed:
    """Line iterator for csv.reader that remembers which physical lines made up a record and
    can push lines back, so a broken record only costs its first line."""

    __slots__ = ("_it", "_pending", "buf", "_next_no")

    def __init__(self, f: Any) -> None:
        self._it = iter(f)
        self._pending: deque[tuple[int, str]] = deque()
        self.buf: list[tuple[int, str]] = []
        self._next_no = 1

    def __iter__(self) -> "_LineFeed":
        return self

    def __next__(self) -> str:
        if self._pending:
            item = self._pending.popleft()
        else:
            item = (self._next_no, next(self._it))
            self._next_no += 1
        self.buf.append(item)
        return item[1]

    def recover(self) -> tuple[int, str, str]:
        """Drop the current record's first line and re-read the rest; returns (line_no, line,
        a note on the re-read lines for the reject detail)."""
        buf, self.buf = self.buf, []
        self._pending.extendleft(reversed(buf[1:]))
        if not buf:
            return self._next_no, "", ""
        note = (f"; lines {buf[1][0]}-{buf[-1][0]} that it swallowed are read again"
                if len(buf) > 1 else "")
        return buf[0][0], buf[0][1], note
