"""The colours of `dvc plots show`: the .dvc/plots/ templates' cell and implementation scales, from the registry.

    python -m rnnlab.comparison.plot_templates      # after adding a cell (tests/test_baseline.py checks them)

DVC draws dvc.yaml's plots with the Vega-Lite templates in .dvc/plots/, static files that name every cell and its
colour (and every implementation and its marker). Written from rnnlab.cells, they colour each cell as the PNGs
do (rnnlab.comparison.figures); everything else in a template is left as it is.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from matplotlib.colors import to_hex

from rnnlab.cells import CELLS, IMPLEMENTATIONS
from rnnlab.files import write_atomically

TEMPLATES = ("cells_linear.json", "cells_scatter.json")
# The markers of the implementations, in IMPLEMENTATIONS' order (Vega-Lite's shape names; the scatter template).
MARKERS = ("circle", "square", "diamond", "triangle-up", "cross", "triangle-down", "star")
COLOUR_SCALE = re.compile(r'("color": \{"field": "cell".*?"scale": )\{"domain": \[[^]]*\], "range": \[[^]]*\]\}',
                          re.DOTALL)
SHAPE_SCALE = re.compile(r'("shape": \{"field": "impl".*?"scale": )\{"domain": \[[^]]*\],\s*"range": \[[^]]*\]\}',
                         re.DOTALL)


def colour_scale() -> dict:
    return {"domain": list(CELLS), "range": [to_hex(cell.colour) for cell in CELLS.values()]}


def shape_scale() -> dict:
    return {"domain": list(IMPLEMENTATIONS), "range": list(MARKERS[:len(IMPLEMENTATIONS)])}


def with_registry_scales(text: str) -> str:
    """A template's text with its cell colour scale (and implementation shape scale, where it has one) set from
    the registry; ValueError where the template has no cell colour scale to set."""
    def scale(pattern: re.Pattern, value: dict, text: str) -> str:
        inline = json.dumps(value, ensure_ascii=False)
        return pattern.sub(lambda match: match.group(1) + inline, text, count=1)

    if not COLOUR_SCALE.search(text):
        raise ValueError("no cell colour scale (encoding.color over field cell, with domain and range) to set")
    text = scale(COLOUR_SCALE, colour_scale(), text)
    text = scale(SHAPE_SCALE, shape_scale(), text)
    json.loads(text)  # still a template DVC can read
    return text


def write_templates(plots_dir: Path) -> list[Path]:
    """Rewrite each template in plots_dir whose scales differ from the registry's; returns those rewritten."""
    written = []
    for name in TEMPLATES:
        path = plots_dir / name
        text = path.read_text()
        try:
            updated = with_registry_scales(text)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from e
        if updated != text:
            write_atomically(path, updated)
            written.append(path)
    return written


def main() -> None:
    plots_dir = Path(".dvc") / "plots"
    try:
        written = write_templates(plots_dir)
    except (OSError, ValueError) as e:
        print(f"plot_templates: error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    print("\n".join(f"wrote {path}" for path in written) or f"{plots_dir}: up to date")


if __name__ == "__main__":
    main()
