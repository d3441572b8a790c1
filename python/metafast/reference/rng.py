"""A pure-Python port of the core's counter-based random generator
(``cpp/include/metafast/rng.hpp``), bit for bit.

The stream of task ``task`` in meta-iteration ``iteration`` of a run seeded with ``seed`` is
a pure function of those three numbers: SplitMix64 (Steele, Lea and Flood 2014) started from
a state keyed by them. The C++ core samples its built-in task families and Reptile's
minibatch shuffles from this generator, so a reference implementation that draws from
:class:`CounterRng` in the same order reproduces the core's random numbers exactly.

All arithmetic is on Python integers reduced modulo 2**64 (C++ ``std::uint64_t``); the
floating-point steps (:meth:`CounterRng.uniform`, :meth:`CounterRng.fill_uniform32`,
:meth:`CounterRng.normal`) do the same
IEEE double operations in the same order as the C++ code. The one exception is
:meth:`CounterRng.fill_normal`: the core evaluates its logarithms, sines and cosines by
vectorised polynomials (``cpp/include/metafast/box_muller.hpp``) where this port calls the C
library, so those normals agree to a few ulp rather than bit for bit.
"""

from __future__ import annotations

import math

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
_TWO_POW_MINUS_53 = 2.0**-53  # 0x1.0p-53
_TWO_POW_MINUS_32 = 2.0**-32


def mix64(z: int) -> int:
    """SplitMix64's finaliser: a bijective mixer of 64-bit integers."""
    z &= MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def shuffle_seed(seed: int) -> int:
    """The seed of Reptile's shuffle streams, apart from the task streams of the same run
    (``cpp/include/metafast/reptile.hpp``)."""
    return mix64(seed) ^ 0x5348554646


class CounterRng:
    """SplitMix64 from a state keyed by ``(seed, iteration, task)``.

    Parameters
    ----------
    seed, iteration, task : int
        The key, each taken modulo 2**64 (as the C++ ``std::uint64_t`` arguments are).
    """

    __slots__ = ("state", "spare")

    def __init__(self, seed: int, iteration: int, task: int) -> None:
        state = mix64((seed + GOLDEN) & MASK64)
        state = mix64((state + iteration) & MASK64)
        self.state = mix64((state + task) & MASK64)
        self.spare: float | None = None

    def next_u64(self) -> int:
        """The next 64-bit output."""
        self.state = (self.state + GOLDEN) & MASK64
        return mix64(self.state)

    def uniform(self, low: float | None = None, high: float | None = None) -> float:
        """Uniform in ``[0, 1)`` with 53 random bits; with ``low`` and ``high``, the C++
        overload ``low + (high - low) * uniform()``."""
        u = float(self.next_u64() >> 11) * _TWO_POW_MINUS_53
        if low is None and high is None:
            return u
        if low is None or high is None:
            raise TypeError("uniform takes no bounds or both low and high")
        return low + (high - low) * u

    def below(self, n: int) -> int:
        """Uniform integer in ``[0, n)`` for ``n >= 1`` (``floor(uniform() * n)``, clamped)."""
        if n < 1:
            raise ValueError(f"below needs n >= 1, got {n}")
        k = int(self.uniform() * float(n))  # C++ static_cast<uint64_t> truncates toward zero
        return k if k < n else n - 1

    def normal(self) -> float:
        """Standard normal by Box-Muller: two uniforms give two values, the cosine one now and
        the sine one at the next call."""
        if self.spare is not None:
            value, self.spare = self.spare, None
            return value
        u1 = 1.0 - self.uniform()  # in (0, 1]
        u2 = self.uniform()
        radius = math.sqrt(-2.0 * math.log(u1))
        self.spare = radius * math.sin(6.283185307179586 * u2)
        return radius * math.cos(6.283185307179586 * u2)

    def fill_uniform32(self, n: int, low: float, high: float) -> list[float]:
        """``n`` uniforms in ``[low, high)`` with 32 random bits each (LinearBinary's inputs):
        two from every output, value ``2j`` from output ``j``'s low 32 bits ``k``, value ``2j + 1``
        from its high 32 bits, each ``low + ((high - low) * 2**-32) * k``. On ``[-1, 1)`` every
        value is exact, so the core's vector code gives the same bits."""
        step = (high - low) * _TWO_POW_MINUS_32
        out: list[float] = []
        for _ in range((n + 1) // 2):
            word = self.next_u64()
            out += [low + step * float(word & 0xFFFFFFFF), low + step * float(word >> 32)]
        return out[:n]

    def fill_normal(self, n: int) -> list[float]:
        """``n`` standard normals in one go (the task families' normals): Box-Muller on
        consecutive pairs of uniforms ``(u1, u2)``, ``r cos(2 pi u2)`` then ``r sin(2 pi u2)``
        with ``r = sqrt(-2 log(1 - u1))``; when ``n`` is odd the last sine is dropped. Does not
        touch :meth:`normal`'s spare value."""
        out: list[float] = []
        for _ in range((n + 1) // 2):
            radius = math.sqrt(-2.0 * math.log(1.0 - self.uniform()))
            angle = 6.283185307179586 * self.uniform()
            out += [radius * math.cos(angle), radius * math.sin(angle)]
        return out[:n]


__all__ = ["MASK64", "GOLDEN", "mix64", "shuffle_seed", "CounterRng"]
