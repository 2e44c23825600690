"""Estimated input tokens of one image, from OpenAI's documented formulas (vision guide).

- Tile models (gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3, ...): ``detail: "low"`` costs the base
  tokens; otherwise the image is scaled to fit 2048x2048, then (if larger) so its shortest side
  is 768 px, and each 512 px tile costs the tile tokens, plus the base (gpt-4o: 85 + 170/tile).
- Patch models (gpt-4.1-mini/nano, gpt-5-mini/nano, o4-mini): 32 px patches, at most 1536
  (larger images are scaled down to fit), times the model's multiplier.

The size is known only for ``data:`` URLs (read from the PNG, JPEG, GIF or WebP header); an
image given by URL or file id is estimated as ``UNSIZED`` (1024x1024: 765 tokens for gpt-4o).
"""

from __future__ import annotations

import binascii
import math
from fractions import Fraction

UNSIZED = (1024, 1024)
"""The size assumed for an image whose size cannot be read (a URL, a file id)."""

DEFAULT_TILES = (85, 170)
TILES = {  # model prefix -> (base tokens, tokens per 512 px tile)
    "gpt-4o-mini": (2833, 5667),
    "gpt-5": (70, 140),
    "o1": (75, 150),
    "o3": (75, 150),
    "computer-use-preview": (65, 129),
}
PATCHES = {  # model prefix -> multiplier of the 32 px patch count
    "gpt-4.1-mini": 1.62,
    "gpt-4.1-nano": 2.46,
    "gpt-5-mini": 1.62,
    "gpt-5-nano": 2.46,
    "o4-mini": 1.72,
}
MAX_PATCHES = 1536
_PREFIXES = sorted([*TILES, *PATCHES], key=len, reverse=True)


def image_tokens(model: str, size: tuple[int, int] | None, detail: str | None = None) -> int:
    """Estimated tokens of one image of ``size`` (``None``: unknown, ``UNSIZED``) for ``model``."""
    width, height = size or UNSIZED
    family = _family(model)
    if family in PATCHES:
        return math.ceil(_patches(width, height) * PATCHES[family])
    base, tile = TILES.get(family, DEFAULT_TILES) if family else DEFAULT_TILES
    if detail == "low":
        return base
    return base + tile * _tiles(width, height)


def size_matters(model: str, detail: str | None) -> bool:
    """Whether the image's size changes its tokens (not for a tile model at low detail)."""
    return detail != "low" or _family(model) in PATCHES


def _family(model: str) -> str | None:
    return next((p for p in _PREFIXES if model.startswith(p)), None)


def _tiles(width: int, height: int) -> int:
    # Scaled sizes are rounded to whole pixels (billing observed: 2049x513 -> 8 tiles, 2050x513
    # -> 4 tiles), with exact fractions so that no float error adds a tile.
    w, h = max(width, 1), max(height, 1)
    if max(w, h) > 2048:
        scale = Fraction(2048, max(w, h))
        w, h = round(w * scale), round(h * scale)
    if min(w, h) > 768:
        scale = Fraction(768, min(w, h))
        w, h = round(w * scale), round(h * scale)
    return -(-w // 512) * -(-h // 512)


def _patches(width: int, height: int) -> int:
    w, h = float(max(width, 1)), float(max(height, 1))
    if math.ceil(w / 32) * math.ceil(h / 32) > MAX_PATCHES:
        r = math.sqrt(32 * 32 * MAX_PATCHES / (w * h))
        r *= min(math.floor(w * r / 32) / (w * r / 32), math.floor(h * r / 32) / (h * r / 32))
        w, h = w * r, h * r
    return min(math.ceil(w / 32) * math.ceil(h / 32), MAX_PATCHES)


def data_url_size(url: str) -> tuple[int, int] | None:
    """``(width, height)`` of a base64 ``data:`` URL's PNG/JPEG/GIF/WebP image, else ``None``."""
    if not url.startswith("data:"):
        return None
    head, _, payload = url.partition(",")
    if not head.endswith(";base64"):
        return None
    try:
        start = binascii.a2b_base64(payload[:64])
        if start.startswith(b"\xff\xd8"):
            return _jpeg_size(binascii.a2b_base64(payload))
    except (binascii.Error, ValueError):
        return None
    return _header_size(start)


def _header_size(data: bytes) -> tuple[int, int] | None:
    le = int.from_bytes
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        return le(data[16:20], "big"), le(data[20:24], "big")
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return le(data[6:8], "little"), le(data[8:10], "little")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        kind = data[12:16]
        if kind == b"VP8X":
            return le(data[24:27], "little") + 1, le(data[27:30], "little") + 1
        if kind == b"VP8L":
            bits = le(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8 ":
            return le(data[26:28], "little") & 0x3FFF, le(data[28:30], "little") & 0x3FFF
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """Walk the JPEG segments to the first start-of-frame marker."""
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            return int.from_bytes(data[i + 7 : i + 9], "big"), height
        if marker in (0x01, *range(0xD0, 0xD9)):
            i += 2
            continue
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None
