"""A Bloom filter of keys: a fixed amount of memory, whatever the number of keys.

``might_hold`` never misses a key that was added; it may answer yes for one that was
not (more often as the filter fills: about 1% at 3 million keys with the defaults).
The daemon records evicted entities in one, so a key it does not hold costs a ledger
look-up only when it may have been evicted, and at worst a needless one.
"""

from __future__ import annotations

from collections.abc import Hashable

BITS = 1 << 25  # 4 MiB
HASHES = 4


class BloomFilter:
    __slots__ = ("_bits", "_mask")

    def __init__(self, bits: int = BITS) -> None:
        if bits <= 0 or bits & (bits - 1):
            raise ValueError("bits must be a power of two")
        self._bits = bytearray(bits // 8 or 1)
        self._mask = bits - 1

    def add(self, key: Hashable) -> None:
        bits = self._bits
        for i in self._positions(key):
            bits[i >> 3] |= 1 << (i & 7)

    def might_hold(self, key: Hashable) -> bool:
        bits = self._bits
        return all(bits[i >> 3] & (1 << (i & 7)) for i in self._positions(key))

    def _positions(self, key: Hashable) -> list[int]:
        # Double hashing: positions h1 + i*h2 are as good as independent hashes.
        h = hash(key) & 0xFFFF_FFFF_FFFF_FFFF
        h1, h2 = h & 0xFFFF_FFFF, (h >> 32) | 1
        return [(h1 + i * h2) & self._mask for i in range(HASHES)]
