"""A memory check before large allocations: a clear ValueError naming the request instead of
an allocation failure (or the machine swapping) in the middle of a call."""

from __future__ import annotations

import os


def available_bytes() -> int | None:
    """Memory the system can give without swapping (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check(needed: float, what: str) -> None:
    """Raises ValueError when `what` needs more than 90% of the available memory."""
    available = available_bytes()
    if available is not None and needed > 0.9 * available:
        raise ValueError(f"{what} needs about {needed / 2**30:.1f} GiB, but only {available / 2**30:.1f} GiB of memory "
                         "is available; use fewer tasks or a smaller model")
