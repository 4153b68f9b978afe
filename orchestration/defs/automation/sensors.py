"""A sensor that notices new or changed input files and re-runs the days they cover (late data included)."""


import hashlib
import json

import dagster as dg

from orchestration.defs.automation.jobs import impact_daily_job
from orchestration.defs.partitions import DAILY_PARTITIONS
from orchestration.defs.resources import ImpactSettings
from orchestration.lib.ingestion import ingest
from orchestration.lib.warehouse import connect

NEW_FILES_SENSOR_NAME = "impact_new_input_files"
WATCHED = (("requests", ingest.REQUEST_SUFFIXES), ("telemetry", ingest.TELEMETRY_SUFFIXES))


def file_fingerprints(settings: ImpactSettings) -> dict[str, str]:
    """path -> 'mtime_ns:size' for every input file (and clusters.yml)."""
    root = settings.data_path
    out: dict[str, str] = {}
    paths = [root / "clusters.yml"] if (root / "clusters.yml").exists() else []
    for sub, suffixes in WATCHED:
        paths += ingest.discover_files(root / sub, suffixes)
    for path in paths:
        stat = path.stat()
        out[str(path.relative_to(root))] = f"{stat.st_mtime_ns}:{stat.st_size}"
    return out


def changed_files(previous: dict[str, str], current: dict[str, str]) -> list[str]:
    """Files that are new or whose fingerprint changed, sorted."""
    return sorted(path for path, fp in current.items() if previous.get(path) != fp)


@dg.sensor(job=impact_daily_job, name=NEW_FILES_SENSOR_NAME, minimum_interval_seconds=300)
def impact_new_input_files(context: dg.SensorEvaluationContext, settings: ImpactSettings):
    """Requests a run of every day covered by a new or changed request/telemetry file. The cursor holds the file
    fingerprints, so each change triggers once; a changed clusters.yml re-runs every day the inputs cover."""
    previous = json.loads(context.cursor) if context.cursor else {}
    current = file_fingerprints(settings)
    changed = changed_files(previous, current)
    if not changed:
        return dg.SkipReason("no new or changed input files")
    con = connect(":memory:")
    try:
        only = None if "clusters.yml" in changed else [settings.data_path / p for p in changed]
        days = ingest.days_in_inputs(con, settings.data_path, only=only)
    finally:
        con.close()
    valid = set(DAILY_PARTITIONS.get_partition_keys())
    keys = [d.isoformat() for d in days if d.isoformat() in valid]
    context.update_cursor(json.dumps(current, sort_keys=True))
    if not keys:
        return dg.SkipReason(f"{len(changed)} changed file(s) cover no partition day")
    digest = hashlib.sha256(json.dumps([[p, current[p]] for p in changed]).encode()).hexdigest()[:16]
    return [dg.RunRequest(partition_key=key, run_key=f"{key}:{digest}") for key in keys]
