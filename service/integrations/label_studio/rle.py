"""Label Studio's brush RLE: the bit-packed run-length format of its BrushLabels regions.

A brush mask travels as the RGBA image flattened row-major (H*W*4 bytes). The bit stream is a
header (32 bits: number of values; 5 bits: word size - 1; four 4-bit fields: the run-length field
widths - 1) and then tokens: a flag bit (1 = a run of one repeated word, 0 = that many literal
words), 2 bits choosing one of the four length widths, the length - 1 in that width, then the
word(s). Padded with zeros to whole bytes and sent as a list of byte values.
"""

from __future__ import annotations

import numpy as np

from service.errors import InvalidMask

_WORD = 8
_WIDTHS = (3, 4, 8, 16)
_LONGEST = 1 << _WIDTHS[-1]


def encode(mask: np.ndarray) -> list[int]:
    """Binary mask [H, W] (truthy = inside) -> Label Studio RLE bytes (all four channels 255 inside)."""
    flat = np.repeat(np.where(np.asarray(mask) != 0, 255, 0).astype(np.uint8).ravel(), 4)
    header = [f"{flat.size:032b}", f"{_WORD - 1:05b}"] + [f"{w - 1:04b}" for w in _WIDTHS]
    tokens = [_run_token(length, value) for length, value in _runs(flat)]
    bits = "".join(header + tokens)
    bits += "0" * (-len(bits) % 8)
    packed = np.packbits(np.frombuffer(bits.encode(), np.uint8) - ord("0"))
    return [int(b) for b in packed]


def _runs(flat: np.ndarray) -> list[tuple[int, int]]:
    """(length, value) of each run of equal values, runs longer than the widest field split up."""
    if flat.size == 0:
        return []
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [flat.size]])
    out = []
    for a, b in zip(starts.tolist(), ends.tolist()):
        while b - a > 0:
            n = min(b - a, _LONGEST)
            out.append((n, int(flat[a])))
            a += n
    return out


def _run_token(length: int, value: int) -> str:
    """One repeated-word token for a run of 1.._LONGEST values."""
    choice = next(i for i, w in enumerate(_WIDTHS) if length <= 1 << w)
    return f"1{choice:02b}{length - 1:0{_WIDTHS[choice]}b}{value:08b}"


def decode(rle: list[int], height: int, width: int) -> np.ndarray:
    """Label Studio RLE bytes -> binary mask [H, W] (a pixel is inside where its alpha is not 0).

    Raises InvalidMask naming the problem for a stream that is not an RLE of an H x W RGBA image."""
    try:
        data = np.asarray(rle, dtype=np.int64)
        if data.ndim != 1 or data.size < 6 or data.min() < 0 or data.max() > 255:
            raise ValueError("not a list of byte values")
        bits = np.unpackbits(data.astype(np.uint8))
        values = _decode_bits(bits)
    except (ValueError, IndexError, TypeError) as exc:
        raise InvalidMask(f"the brush region's rle is not Label Studio RLE ({exc})") from None
    if values.size != height * width * 4:
        raise InvalidMask(f"the brush region's rle holds {values.size} values; a {width}x{height} image "
                          f"needs {height * width * 4}")
    return values.reshape(height, width, 4)[:, :, 3] != 0


def _decode_bits(bits: np.ndarray) -> np.ndarray:
    pos = 0

    def take(n: int) -> int:
        nonlocal pos
        if pos + n > bits.size:
            raise ValueError("the stream ends inside a token")
        chunk = bits[pos:pos + n]
        pos += n
        return int("".join("1" if b else "0" for b in chunk.tolist()) or "0", 2)

    total, word = take(32), take(5) + 1
    widths = [take(4) + 1 for _ in range(4)]
    out = np.zeros(total, np.uint8)
    i = 0
    while i < total:
        repeated = take(1)
        n = take(widths[take(2)]) + 1
        if i + n > total:
            raise ValueError("a run passes the end of the image")
        if repeated:
            out[i:i + n] = take(word)
        else:
            for j in range(i, i + n):
                out[j] = take(word)
        i += n
    return out
