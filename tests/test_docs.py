"""The documentation holds together: every link between the pages, and every `docs/<page>.md#<section>` the product
prints (check explanations, hints), points at a page and a heading that exist; the pages are reference, not a
diary; and each check that does not pass explains itself in one line naming its page."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import REPO

from orchestration.lib import check_messages as cm
from orchestration.run_progress import NO_ADVICE, StepProgress, check_advice

DOCS = REPO / "docs"
PAGES = sorted(DOCS.glob("*.md"))
MD_LINK = re.compile(r"\]\(([^)#\s]*)(?:#([^)\s]+))?\)")
DOCS_MENTION = re.compile(r"docs/([a-z0-9_-]+\.md)(?:#([a-z0-9_-]+))?")


def slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)  # headings, not comments in code blocks
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.MULTILINE)}


def test_pages_exist():
    names = {p.name for p in PAGES}
    assert {"README.md", "method.md", "inputs.md", "warehouse.md", "prometheus.md", "models.md",
            "impact-and-factors.md", "comparisons.md", "validation.md", "scheduling.md", "report.md"} <= names


@pytest.mark.parametrize("page", [*PAGES, REPO / "CHANGELOG.md"], ids=lambda p: p.name)
def test_links_between_pages_resolve(page: Path):
    broken = []
    for target, anchor in MD_LINK.findall(page.read_text()):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        path = (page.parent / target) if target else page
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path):
            broken.append(f"{target}#{anchor}: no such heading")
    assert broken == []


def test_docs_the_product_prints_resolve():
    """Every `docs/<page>.md#<section>` in the code (check explanations, the report, CLI hints) exists."""
    broken = []
    for source in sorted((REPO / "orchestration").rglob("*.py")):
        for page, anchor in DOCS_MENTION.findall(source.read_text()):
            path = DOCS / page
            if page in ("operations.md", "advice.md", "images.md", "spark.md") and not path.exists():
                continue  # written on other branches
            if not path.exists() or (anchor and anchor not in anchors(path)):
                broken.append(f"{source.relative_to(REPO)}: docs/{page}#{anchor}")
    assert broken == []


def test_pages_are_reference_not_a_diary():
    """No dated run logs: measurements state the figure, the data and the test; timings live in benchmarks/."""
    for page in PAGES:
        text = page.read_text()
        assert not re.search(r"machine of|20\d\d-\d\d-\d\d \d\d:\d\d|fastest hour", text), page.name


# ------------------------------------------------------------------------------------------------ one-liners


def _docs_link(line: str) -> str:
    (match,) = re.findall(r"\(docs/[a-z-]+\.md#[a-z-]+\)", line)
    return match


def test_fit_quality_advice_names_the_worst_fit_and_the_page():
    bad = pd.DataFrame([
        {"model": "m", "hardware": "A100", "source": "telemetry", "target": "energy", "r_squared_uncentered": 0.86,
         "cv_mape": 0.36, "nobs": 10},
        {"model": "n", "hardware": "H100", "source": "telemetry", "target": "energy", "r_squared_uncentered": 0.95,
         "cv_mape": 0.30, "nobs": 10},
    ])  # fmt: skip
    line = cm.fit_quality_advice(bad, 0.9, 0.25)
    assert "m on A100 (energy from telemetry)" in line and "uncentred R² 0.86 < 0.90" in line
    assert "CV MAPE 36% > 25%" in line and "and 1 more" in line and "batching" in line
    assert _docs_link(line) == "(docs/models.md#fit-quality)" and "\n" not in line
    assert cm.fit_quality_advice(bad.iloc[0:0], 0.9, 0.25) is None


def test_other_one_liners():
    drift = pd.DataFrame([{"model": "m", "hardware": "A100", "source": "telemetry", "target": "energy",
                           "coefficient": "alpha_out", "shift_se": 4.2}])  # fmt: skip
    assert "alpha_out of m on A100" in cm.drift_advice(drift, 3) and "4.2 standard errors" in cm.drift_advice(drift, 3)
    low = [("c1", "2024-05-01", 0.90), ("c2", "2024-05-01", 0.80)]
    coverage = cm.coverage_advice(low, 0.95)
    assert "80.0% of c2 on 2024-05-01" in coverage and "impact run --start 2024-05-01 --end 2024-05-01" in coverage
    bug = cm.invariant_advice("cluster-day(s) that do not add up", [("c1", "2024-05-01", 1.0)])
    assert bug.startswith("1 cluster-day(s) that do not add up (first: c1, 2024-05-01, 1.0)") and "report it" in bug
    gaps = {"no_grid_factor": 3, "no_energy_for_uncovered_time": 2}
    assert "3 request(s) have no grid carbon factor" in cm.factor_gaps_advice(gaps)
    assert "2 request(s) ran where no telemetry" in cm.factor_gaps_advice(gaps)
    assert cm.factor_gaps_advice({"no_grid_factor": 0, "no_energy_for_uncovered_time": 0}) is None
    above = pd.DataFrame([{"model": "m", "hardware": "A100", "mlenergy_verdict": "above band",
                           "ours_accelerator_j_per_output_token": 17.4, "mlenergy_band_low_j_per_token": 0.07,
                           "mlenergy_band_high_j_per_token": 11.1}])  # fmt: skip
    assert "17.4 J per output token is above" in cm.mlenergy_advice(above) and "under-used" in cm.mlenergy_advice(above)
    for line in (cm.drift_advice(drift, 3), coverage, bug, cm.factor_gaps_advice(gaps), cm.mlenergy_advice(above)):
        assert re.search(r"\(docs/[a-z-]+\.md#[a-z-]+\)", line), line


def test_impact_run_prints_one_line_per_check_that_did_not_pass():
    def evaluation(name, passed, severity, description):
        data = SimpleNamespace(check_name=name, passed=passed, severity=SimpleNamespace(value=severity),
                               description=description)  # fmt: skip
        return SimpleNamespace(event_type_value="ASSET_CHECK_EVALUATION", asset_check_evaluation_data=data)

    result = SimpleNamespace(all_events=[
        evaluation("energy_conservation", True, "ERROR", None),
        evaluation("fit_quality", False, "WARN", "the paper's form fits m poorly (docs/models.md#fit-quality)"),
        evaluation("some_dbt_test", False, "ERROR", None),
        SimpleNamespace(event_type_value="STEP_SUCCESS"),
    ])  # fmt: skip
    assert check_advice(result) == [
        "  fit_quality (warning): the paper's form fits m poorly (docs/models.md#fit-quality)",
        f"  some_dbt_test (error): {NO_ADVICE}",
    ]


def test_slow_steps_and_dbt_models_are_printed_as_they_finish(monkeypatch):
    """impact run's progress: a step or dbt model that took a second or more is printed when it finishes; quick
    ones are not."""
    clock = iter([0.0, 0.5, 10.0, 14.0, 14.0])  # start a, end a (0.5 s), start b, end b (4 s)
    monkeypatch.setattr("orchestration.run_progress.time.monotonic", lambda: next(clock))

    def entry(kind, step, materialization=None):
        event = SimpleNamespace(event_type_value=kind, step_key=step,
                                event_specific_data=SimpleNamespace(materialization=materialization))  # fmt: skip
        return SimpleNamespace(dagster_event=event)

    def model(path, seconds):
        key = SimpleNamespace(to_user_string=lambda: path)
        return SimpleNamespace(asset_key=key, metadata={"Execution Duration": SimpleNamespace(value=seconds)})

    lines: list[str] = []
    progress = StepProgress(lines.append)
    progress(entry("STEP_START", "raw__requests"))
    progress(entry("STEP_SUCCESS", "raw__requests"))
    progress(entry("STEP_START", "impact_dbt_models"))
    progress(entry("ASSET_MATERIALIZATION", "impact_dbt_models", model("intermediate/int_request_days", 2.5)))
    progress(entry("ASSET_MATERIALIZATION", "impact_dbt_models", model("staging/stg_raw__requests", 0.1)))
    progress(entry("STEP_SUCCESS", "impact_dbt_models"))
    progress(SimpleNamespace(dagster_event=None))
    assert lines == ["        dbt intermediate/int_request_days  2.5 s", "      dbt models (and their tests)  4.0 s"]
