"""Real PNG thumbnails without an imaging library: zlib + struct, as the PNG spec describes.

The picture is a soft gradient with a centred block whose colours come from a seed (the design's sha1), so
each design gets its own, stable thumbnail.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from functools import lru_cache

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


@lru_cache(maxsize=64)
def render_png(width: int, height: int, seed: str) -> bytes:
    digest = hashlib.sha256(seed.encode()).digest()
    base = digest[0:3]
    accent = digest[3:6]
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")  # filter type 0 (None) for every scanline
        in_band_y = height // 4 <= y < 3 * height // 4
        for x in range(width):
            if in_band_y and width // 4 <= x < 3 * width // 4:
                row += accent
            else:
                shade = (x + y) * 96 // (width + height)
                row += bytes(min(255, c // 2 + shade) for c in base)
        rows.append(bytes(row))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"".join(rows), 6))
            + _chunk(b"IEND", b""))
