"""A benchmark's result files: what it ran on (this project's virtual machines change CPU between sessions, an AMD
EPYC in some, an Intel Xeon in others, and speed figures only compare on the same processor), and the JSON report
with its markdown table beside it."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

#: CPU features that change which kernels run: AVX-512 matrix products, int8 dot products (VNNI), bfloat16.
FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_model() -> tuple[str | None, list[str]]:
    """The processor's model name and which of FEATURES it has, from /proc/cpuinfo (None, [] elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None, []
    name, flags = None, set()
    for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name is None:
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    return name, [feature for feature in FEATURES if feature in flags]


def machine() -> dict:
    import torch

    name, features = cpu_model()
    return {
        "cpu_count": os.cpu_count(),
        "cpu": name,
        "cpu_features": features,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor(),
    }


def write_results(output: Path, report: dict[str, Any], table: str) -> None:
    """`output` (JSON) and the table as `output` with a .md suffix; the table is printed too."""
    from utils.core.files import write_json

    write_json(output, report)
    output.with_suffix(".md").write_text(table, encoding="utf-8")
    print(table)


def markdown_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table's lines: the header, its rule, one line per row of already formatted cells."""
    header = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return header + ["| " + " | ".join(row) + " |" for row in rows]
