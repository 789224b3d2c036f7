"""What every peer reports about its own memory."""

from __future__ import annotations


def vm_hwm_mb() -> float:
    """This process's peak RSS since exec (``VmHWM``); ``ru_maxrss`` would include the parent's pre-exec image."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0
