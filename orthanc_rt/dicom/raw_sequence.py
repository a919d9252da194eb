"""Selected elements of a still-undecoded sequence, read straight from its bytes.

pydicom turns every item of a sequence into a Dataset and every element into
a DataElement when the sequence is first touched. For an RTSTRUCT's
ROIContourSequence (thousands of contours) that was two thirds of a DVH
analysis (bench/dvh_speed.py). This walks the encoded items once and keeps
only the values asked for, as bytes.

It reads little-endian transfer syntaxes, explicit or implicit VR, with
defined or undefined lengths. Anything else (big endian, a value already
decoded by pydicom, bytes that do not parse) gives None, and the caller uses
pydicom as before: the answers are the same, only slower.
"""
from __future__ import annotations

import struct
from typing import Any

# Explicit VR elements with these VRs have a reserved 2 bytes and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD

Item = dict[int, Any]  # tag -> bytes, or list[Item] for a sequence named in `sequences`


class _Unreadable(Exception):
    """The bytes are not what this reader handles; the caller falls back to pydicom."""


def read_items(element: Any, wanted: set[int], sequences: set[int]) -> list[Item] | None:
    """The items of the raw sequence `element` (a pydicom RawDataElement) with the `wanted` tags' values.

    Tags in `sequences` are read as nested sequences (of items with the
    wanted tags), the others as their raw value bytes. None when pydicom must
    do it (see the module notes).
    """
    value = getattr(element, "value", None)
    if not isinstance(value, bytes) or not getattr(element, "is_little_endian", False):
        return None
    reader = _Reader(value, bool(element.is_implicit_VR), wanted, sequences)
    try:
        items, end = reader.sequence(0, len(value))
    except (_Unreadable, struct.error):
        return None
    return items if end == len(value) else None


class _Reader:
    def __init__(self, data: bytes, implicit: bool, wanted: set[int], sequences: set[int]):
        self.data, self.implicit, self.wanted, self.sequences = data, implicit, wanted, sequences

    def header(self, pos: int) -> tuple[int, bytes | None, int, int]:
        """(tag, VR or None, value length, value position) of the element at `pos`."""
        group, element = struct.unpack_from("<HH", self.data, pos)
        tag = group << 16 | element
        if self.implicit or group == 0xFFFE:  # item and delimiter tags never carry a VR
            return tag, None, struct.unpack_from("<I", self.data, pos + 4)[0], pos + 8
        vr = self.data[pos + 4:pos + 6]
        if vr in _LONG_VRS:
            return tag, vr, struct.unpack_from("<I", self.data, pos + 8)[0], pos + 12
        return tag, vr, struct.unpack_from("<H", self.data, pos + 6)[0], pos + 8

    def sequence(self, pos: int, end: int | None) -> tuple[list[Item], int]:
        """Items from `pos` to `end` (None: up to the sequence delimiter); returns them and where reading ended."""
        items = []
        while end is None or pos < end:
            tag, _, length, pos = self.header(pos)
            if tag == _SEQUENCE_END and end is None:
                return items, pos
            if tag != _ITEM:
                raise _Unreadable(f"expected an item, found tag {tag:08x}")
            item, pos = self.item(pos, None if length == _UNDEFINED else pos + length)
            items.append(item)
        if pos != end:
            raise _Unreadable("an item runs past its sequence")
        return items, pos

    def item(self, pos: int, end: int | None) -> tuple[Item, int]:
        fields: Item = {}
        while end is None or pos < end:
            tag, vr, length, pos = self.header(pos)
            if tag == _ITEM_END and end is None:
                return fields, pos
            if length == _UNDEFINED:  # a sequence: read it to find its end, even when not wanted
                if vr not in (None, b"SQ"):  # e.g. UN of undefined length: leave it to pydicom
                    raise _Unreadable(f"undefined length on VR {vr!r}")
                value, pos = self.sequence(pos, None)
                if tag in self.sequences or tag in self.wanted:
                    fields[tag] = value
                continue
            if pos + length > len(self.data):
                raise _Unreadable("a value runs past the end")
            if tag in self.sequences:
                fields[tag] = self.sequence(pos, pos + length)[0]
            elif tag in self.wanted:
                fields[tag] = self.data[pos:pos + length]
            pos += length
        if pos != end:
            raise _Unreadable("an element runs past its item")
        return fields, pos
