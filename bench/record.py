"""What every bench JSON starts with: the exact command, the machine it ran on, the date; and the timing
helper the benches share (warm-up, repeats, median with its range)."""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPOSITORY = Path(__file__).resolve().parents[1]


def command() -> str:
    """The command line as run: `python -m bench.x ...` or `python bench/x.py ...`, with its arguments."""
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    if spec is not None:  # run with -m
        launched = f"-m {spec.name}"
    else:
        script = Path(sys.argv[0]).resolve()
        launched = str(script.relative_to(REPOSITORY) if script.is_relative_to(REPOSITORY) else script)
    return " ".join(["python", launched, *sys.argv[1:]])


def machine(device: torch.device | str = "cpu") -> dict:
    """Cores this process may use, torch's intra-op threads, the device the timed work ran on."""
    device = torch.device(device)
    return {
        "cores": len(os.sched_getaffinity(0)),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "gpu_available": torch.cuda.is_available(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def header(device: torch.device | str = "cpu") -> dict:
    return {"command": command(), "machine": machine(device), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def timed(function: Callable[[], object], repeats: int, warmups: int = 1,
          synchronize: Callable[[], None] = lambda: None, clock: Callable[[], float] = time.perf_counter) -> dict:
    """Seconds of `function()`: `warmups` untimed calls, then `repeats` timed ones; median, min, max, all.
    `clock=time.process_time` counts this process's CPU seconds: for single-threaded work on a shared machine,
    what the work costs, whatever else is running."""
    for _ in range(warmups):
        function()
    seconds = []
    for _ in range(repeats):
        synchronize()
        started = clock()
        function()
        synchronize()
        seconds.append(clock() - started)
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "repeats": repeats,
            "all": [round(value, 4) for value in seconds]}


def write_record(path: Path, content: dict, device: torch.device | str = "cpu") -> None:
    """Write a bench's JSON atomically: header() (command, machine, date), then `content`."""
    from cctrack.files import write_json_atomic

    write_json_atomic(Path(path), {**header(device), **content})
    print(f"wrote {path}")
