"""The column reference of docs/warehouse.md, rendered from the dbt YAML (through the parsed manifest), so the page
cannot drift from the descriptions dbt's catalogue shows: every table and view of the warehouse with its
description and every column with its description (types: dbt's catalogue, `make docs`).

    python -m orchestration.lib.warehouse_reference docs/warehouse.md     # rewrite the generated part (make docs)

tests/test_dbt_docs.py fails when the page is not the current rendering. Pure code: reads the manifest JSON.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path

BEGIN = "<!-- BEGIN GENERATED REFERENCE: python -m orchestration.lib.warehouse_reference docs/warehouse.md -->"
END = "<!-- END GENERATED REFERENCE -->"

# (schema as analysts see it, heading, what the section is)
SECTIONS: tuple[tuple[str, str, str], ...] = (
    ("marts", "marts: what analysts query",
     ("Per request, per window, per cluster-day and per day x cluster x model x tenant; views over the "
     "per-request table add up the days of a request that ran past midnight.")),
    ("models", "models: energy and runtime models",
     "Written by the Python assets of the models group (job impact_models)."),
    ("comparisons", "marts (comparisons): measured vs estimated",
     "Written by the Python assets of the comparisons group."),
    ("advice", "advice: routing, rightsizing, shifting, settings",
     "Written by the Python assets of the advice group (job impact_advice) when advice.yml is present: docs/advice.md."),
    ("factors", "factors: impact factors", "Loaded from data/factors/ and the data directory's factors/."),
    ("raw", "raw: the inputs as loaded", "Every input row is here or in raw.rejected_rows."),
    ("intermediate", "intermediate: the steps of the method",
     ("Per pool-window, per request and day, per cluster and day: not for analysis, but every figure of the marts "
     "can be traced here.")),
    ("staging", "staging: typed views of raw and factors", "One view per source table, renaming and casting only."),
)


def _text(value: str | None) -> str:
    """A description as one Markdown table cell: whitespace folded, pipes escaped."""
    return re.sub(r"\s+", " ", value or "").strip().replace("|", "\\|")


def _relations(manifest: Mapping) -> dict[str, list[dict]]:
    """Models and sources per section key, each with its address, description, materialisation and columns."""
    out: dict[str, list[dict]] = {key: [] for key, _, _ in SECTIONS}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        kind = node["config"].get("materialized", "")
        out.setdefault(node["schema"], []).append({
            "address": f"{node['schema']}.{node.get('alias') or node['name']}",
            "description": node.get("description", ""),
            "kind": "view" if kind == "view" else "table (one partition per day)" if kind == "partition" else kind,
            "columns": list(node["columns"].values()),
        })  # fmt: skip
    for node in manifest["sources"].values():
        section = "comparisons" if node["source_name"] == "comparisons" else node["schema"]
        out.setdefault(section, []).append({
            "address": f"{node['schema']}.{node['name']}",
            "description": node.get("description", ""),
            "kind": f"source {node['source_name']}",
            "columns": list(node["columns"].values()),
        })  # fmt: skip
    return out


def render(manifest: Mapping) -> str:
    """The generated part of docs/warehouse.md (between BEGIN and END)."""
    relations = _relations(manifest)
    lines = [BEGIN, ""]
    for key, heading, about in SECTIONS:
        rels = sorted(relations.get(key, []), key=lambda r: r["address"])
        if not rels:
            continue
        lines += [f"### {heading}", "", about, ""]
        for rel in rels:
            lines += [f"#### `{rel['address']}`", "", f"*{rel['kind']}.* {_text(rel['description'])}", ""]
            lines += ["| column | description |", "|---|---|"]
            for col in rel["columns"]:
                lines.append(f"| `{col['name']}` | {_text(col.get('description'))} |")
            lines.append("")
    lines.append(END)
    return "\n".join(lines)


def splice(page: str, generated: str) -> str:
    """The page with its generated part replaced (the part must be there once)."""
    start, end = page.find(BEGIN), page.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the page has no generated part (markers {BEGIN!r} ... {END!r})")
    return page[:start] + generated + page[end + len(END):]


def main(argv: list[str] | None = None) -> int:
    from orchestration.dbt_manifest import MANIFEST, prepare_manifest

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m orchestration.lib.warehouse_reference docs/warehouse.md", file=sys.stderr)
        return 2
    prepare_manifest()
    page = Path(args[0])
    page.write_text(splice(page.read_text(), render(json.loads(MANIFEST.read_text()))))
    print(f"{page}: reference regenerated from the dbt YAML")
    return 0


if __name__ == "__main__":
    sys.exit(main())
