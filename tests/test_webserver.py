"""The UI a user opens with `make ui`: the Makefile's own recipe (`dagster dev` on 127.0.0.1, a free port) serves the
demo's warehouse and run history (conftest's demo_build). Checked through the GraphQL API (lineage, groups, owners,
kinds, descriptions, partitions, asset checks; field names verified against the Dagster 1.13 server's schema) and
in headless Chromium (the lineage page, a group's graph, an asset's checks, read from the DOM), plus the code
location's name and a start-up without warnings."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cdp import Browser, cdp_available, chromium_executable

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("webserver")]

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 180.0
SHUTDOWN_GRACE_S = 5.0  # then SIGKILL: the Dagster home is a temporary one, nothing to save
LOCATION_NAME = "inference_impact"  # pyproject.toml [tool.dg.project] code_location_name

from test_definitions import EXPECTED_KEYS  # the same snapshot the UI must show

ALL_KEYS = set().union(*EXPECTED_KEYS.values())
# clusters.yml and the factor tables are one snapshot each and the models and comparisons read a trailing window
# of the marts: none of them is per day (but the comparison's per-day parts, reduced with their day).
DAY_PARTS = {"marts/cmp_ecologits_day_combos", "marts/cmp_ecologits_day_bins", "models/fit_sample_days"}
UNPARTITIONED = (
    {"raw/clusters"} | EXPECTED_KEYS["factors"] | EXPECTED_KEYS["models"] | EXPECTED_KEYS["comparisons"]
    | EXPECTED_KEYS["reports"]
) - DAY_PARTS | {"advice/settings", "advice/summary"} | {"operations/published_models", "operations/retention"}
# Which layers each layer may read from: lineage flows raw -> staging -> intermediate -> marts, never backwards.
ALLOWED_UPSTREAM_GROUPS = {
    "raw": {"raw", "factors"},  # raw/requests reads the image quality labels (factors/image_quality)
    "factors": set(),
    "staging": {"raw", "factors"},
    "intermediate": {"staging", "intermediate"},
    "marts": {"staging", "intermediate", "marts"},
    "models": {"raw", "marts", "models"},
    "comparisons": {"factors", "marts", "comparisons"},
    "reports": {"marts", "models"},
    "advice": {"raw", "staging", "intermediate", "marts", "models", "advice"},
    # the publications wait for every asset of their job (defs/operations)
    "operations": {"raw", "factors", "staging", "intermediate", "marts", "models", "comparisons", "advice"},
}

ASSET_NODES_QUERY = """
{
  assetNodes {
    assetKey { path }
    groupName
    kinds
    computeKind
    description
    owners {
      __typename
      ... on TeamAssetOwner { team }
      ... on UserAssetOwner { email }
    }
    dependencyKeys { path }
    dependedByKeys { path }
    isPartitioned
    hasAssetChecks
  }
}
"""

ASSET_CHECKS_QUERY = """
query AssetChecks($path: [String!]!) {
  assetNodeOrError(assetKey: {path: $path}) {
    __typename
    ... on AssetNode {
      assetChecksOrError {
        __typename
        ... on AssetChecks { checks { name description blocking } }
        ... on AssetCheckNeedsMigrationError { message }
        ... on AssetCheckNeedsUserCodeUpgrade { message }
        ... on AssetCheckNeedsAgentUpgradeError { message }
      }
    }
    ... on AssetNotFoundError { message }
  }
}
"""

WORKSPACE_QUERY = """
{
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on RepositoryLocation { name }
          ... on PythonError { message stack }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""


@dataclass
class Server:
    url: str
    port: int
    args: list[str]
    proc: subprocess.Popen
    log: Path

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        response = requests.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
        )
        response.raise_for_status()
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _make_ui_recipe(home: Path, warehouse: Path, port: int) -> str:
    """The shell commands `make ui` runs, for this Dagster home, warehouse and port (`make -n`, with the venv and
    the dbt manifest taken as up to date, so nothing is installed or parsed)."""
    make = shutil.which("make")
    if make is None:
        pytest.fail("make is not installed: the UI is started by `make ui`")
    result = subprocess.run(
        [make, "--no-print-directory", "-n", "-o", ".venv/.installed", "-o", "dbt_project/target/manifest.json",
         "ui", f"DAGSTER_HOME={home}", f"WAREHOUSE={warehouse}", f"UI_PORT={port}",
         f"BIN={Path(sys.executable).parent}"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _group_alive(pgid):
            return True
        time.sleep(0.2)
    return not _group_alive(pgid)


def _group_processes(pgid: int, needle: str) -> list[int]:
    """Processes of the group whose command line contains ``needle`` (from /proc; empty elsewhere)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and needle in cmdline:  # fields after the name: state, ppid, pgrp, ...
            found.append(int(stat.parent.name))
    return found


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C for `dagster dev` (SIGINT: it shuts its webserver, daemon and code server down, ~2 s), then SIGKILL
    whatever is left of the process group the recipe's shell leads (nothing else is in that group)."""
    pgid = proc.pid  # start_new_session=True: the recipe's shell leads its own group
    if proc.poll() is None:
        for pid in _group_processes(pgid, "dagster dev") or [pgid]:
            try:
                os.kill(pid, signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=SHUTDOWN_GRACE_S)
        except subprocess.TimeoutExpired:
            pass
    if not _wait_group_gone(pgid, 5.0):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    if not _wait_group_gone(pgid, 5.0):
        raise RuntimeError(f"webserver process group {pgid} survived SIGKILL")


def _wait_ready(server: Server, deadline: float) -> None:
    """/server_info answers once uvicorn is up; then the code location must report LOADED (not a load error)."""
    last_error: object = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"webserver exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            info = requests.get(f"{server.url}/server_info", timeout=2)
            if info.ok and "dagster_version" in info.json():
                workspace = server.graphql(WORKSPACE_QUERY)["workspaceOrError"]
                entries = workspace.get("locationEntries") or []
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errors = [
                        e for e in entries if e["locationOrLoadError"]["__typename"] != "RepositoryLocation"
                    ]
                    assert not errors, f"code location failed to load: {errors}"
                    return
                last_error = workspace
        except (requests.RequestException, ValueError) as exc:
            last_error = exc
        time.sleep(0.5)
    raise TimeoutError(
        f"webserver not ready after {STARTUP_TIMEOUT_S}s ({last_error!r}):\n{server.log_tail()}"
    )


@pytest.fixture(scope="module")
def server(demo_build, tmp_path_factory: pytest.TempPathFactory):
    """`make ui` on the demo's warehouse and Dagster home (its runs and check results are the UI's history)."""
    logs = tmp_path_factory.mktemp("ui")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "IMPACT_PROMETHEUS"))}
    env.update(PYTHONUNBUFFERED="1")
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    for attempt in range(3):  # the free port can be taken between probing and binding: retry on a new one
        port = _free_port()
        args = ["bash", "-c", _make_ui_recipe(demo_build.dagster_home, demo_build.warehouse, port)]
        log = logs / f"make-ui-{attempt}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args,
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        srv = Server(url=f"http://{HOST}:{port}", port=port, args=args, proc=proc, log=log)
        try:
            _wait_ready(srv, deadline)
        except RuntimeError:
            _stop(proc)
            if "address already in use" in srv.log_tail().lower() and attempt < 2:
                continue
            raise
        except BaseException:
            _stop(proc)
            raise
        break
    try:
        yield srv
    finally:
        _stop(srv.proc)


@pytest.fixture(scope="module")
def nodes(server: Server) -> dict[str, dict]:
    data = server.graphql(ASSET_NODES_QUERY)
    return {"/".join(n["assetKey"]["path"]): n for n in data["assetNodes"]}


def _keys(refs: list[dict]) -> set[str]:
    return {"/".join(r["path"]) for r in refs}


def _non_loopback_ipv4() -> str | None:
    """The address of the default route, without sending a packet (UDP connect only picks a source address)."""
    for probe in ("192.0.2.1", "10.255.255.255", "8.8.8.8"):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.connect((probe, 9))
                addr = sock.getsockname()[0]
        except OSError:
            continue
        if addr and not addr.startswith("127.") and addr != "0.0.0.0":
            return addr
    return None


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of LISTEN sockets on `port`, from /proc/net/tcp{,6} (hex, little-endian for IPv4)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            addr_hex, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:
                continue
            if len(addr_hex) == 8:
                found.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr_hex)[::-1]))
            else:
                raw = bytes.fromhex(addr_hex)
                found.add(
                    socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
                )
    return found


def test_make_ui_serves_the_real_webserver_on_loopback_only(server: Server):
    recipe = server.args[-1]
    assert "-m dagster dev" in recipe and f"-h {HOST}" in recipe, recipe
    info = requests.get(f"{server.url}/server_info", timeout=5).json()
    assert info["dagster_webserver_version"].startswith("1.13"), info
    assert server.graphql("{ version }")["version"].startswith("1.13")

    listening = _listening_addresses(server.port)
    if listening:  # Linux: the only listening socket on the port is the loopback one
        assert listening == {HOST}, listening

    other = _non_loopback_ipv4()
    if other is None:
        pytest.skip("no non-loopback IPv4 address on this machine to probe")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        assert sock.connect_ex((other, server.port)) != 0, f"webserver reachable on {other}:{server.port}"


def test_asset_keys_and_groups(nodes: dict[str, dict]):
    assert set(nodes) == ALL_KEYS
    by_group: dict[str, set[str]] = {}
    for key, node in nodes.items():
        by_group.setdefault(node["groupName"], set()).add(key)
    assert by_group == EXPECTED_KEYS


def test_lineage_raw_to_marts(nodes: dict[str, dict]):
    deps = {key: _keys(node["dependencyKeys"]) for key, node in nodes.items()}
    edges = [
        ("raw/requests", "raw/clusters"),
        ("raw/telemetry_samples", "raw/clusters"),
        ("staging/stg_raw__clusters", "raw/clusters"),
        ("staging/stg_raw__requests", "raw/requests"),
        ("staging/stg_raw__telemetry_samples", "raw/telemetry_samples"),
        ("intermediate/int_cluster_day_params", "staging/stg_raw__clusters"),
        ("intermediate/int_telemetry_intervals", "staging/stg_raw__telemetry_samples"),
        ("intermediate/int_request_days", "intermediate/int_pool_window_impact"),
        ("intermediate/int_request_days", "intermediate/int_pool_window_load"),
        ("intermediate/int_pool_window_load", "intermediate/int_request_window_overlaps"),
        ("intermediate/int_pool_window_impact", "intermediate/int_pool_window_energy"),
        ("marts/fct_request_energy", "intermediate/int_request_days"),
        ("marts/fct_window_energy", "intermediate/int_pool_window_energy"),
        ("marts/fct_cluster_energy_daily", "marts/fct_window_energy"),
        ("staging/stg_factors__grid_intensity_hourly", "factors/grid_intensity_hourly"),
        ("intermediate/int_pool_window_impact", "intermediate/int_cluster_hour_intensity"),
        ("marts/fct_request_impact", "intermediate/int_request_days"),
        ("marts/cmp_ecologits", "marts/fct_request_impact"),
        ("marts/cmp_ecologits", "marts/cmp_ecologits_day_combos"),
        ("marts/cmp_ecologits_day_bins", "marts/fct_request_impact"),
    ]
    for downstream, upstream in edges:
        assert upstream in deps[downstream], (downstream, deps[downstream])
        # the reverse edge is what the UI draws downstream of a node
        assert downstream in _keys(nodes[upstream]["dependedByKeys"]), (upstream, downstream)
    assert deps["raw/clusters"] == set()

    group = {key: node["groupName"] for key, node in nodes.items()}
    for key, upstream in deps.items():
        assert upstream <= ALL_KEYS, (key, upstream - ALL_KEYS)  # no dangling edge
        if group[key] not in ("raw", "factors") and key != "operations/retention":  # inputs; maintenance
            assert upstream, f"{key} has no upstream asset"
        assert {group[u] for u in upstream} <= ALLOWED_UPSTREAM_GROUPS[group[key]], (key, upstream)

    def ancestors(key: str) -> set[str]:
        seen, todo = set(), [key]
        while todo:
            for up in deps[todo.pop()]:
                if up not in seen:
                    seen.add(up)
                    todo.append(up)
        return seen

    for mart in EXPECTED_KEYS["marts"]:  # every mart traces back through every layer to raw inputs
        layers = {group[a] for a in ancestors(mart)}
        assert {"raw", "staging", "intermediate"} <= layers, (mart, layers)
    assert EXPECTED_KEYS["raw"] <= ancestors("marts/fct_cluster_energy_daily")


def test_every_asset_has_description_owners_and_kinds(nodes: dict[str, dict]):
    for key, node in nodes.items():
        assert (node["description"] or "").strip(), f"{key}: no description"
        owners = [o.get("team") or o.get("email") for o in node["owners"]]
        assert owners and all(owners), f"{key}: owners {node['owners']}"
        assert node["kinds"] or node["computeKind"], f"{key}: no kinds"
        assert "duckdb" in node["kinds"], (key, node["kinds"])
    for key in EXPECTED_KEYS["staging"] | EXPECTED_KEYS["intermediate"] | EXPECTED_KEYS["marts"]:
        assert "dbt" in nodes[key]["kinds"], (key, nodes[key]["kinds"])


def test_partitioned_assets(nodes: dict[str, dict]):
    for key, node in nodes.items():
        assert node["isPartitioned"] is (key not in UNPARTITIONED), (key, node["isPartitioned"])


def _checks(server: Server, key: str) -> dict[str, dict]:
    data = server.graphql(ASSET_CHECKS_QUERY, {"path": key.split("/")})["assetNodeOrError"]
    assert data["__typename"] == "AssetNode", data
    checks = data["assetChecksOrError"]
    assert checks["__typename"] == "AssetChecks", checks
    return {c["name"]: c for c in checks["checks"]}


def test_asset_checks(server: Server, nodes: dict[str, dict]):
    daily = _checks(server, "marts/fct_cluster_energy_daily")
    assert {"energy_conservation", "telemetry_coverage"} <= set(daily), sorted(daily)
    assert daily["energy_conservation"]["blocking"] is True
    assert daily["telemetry_coverage"]["blocking"] is False  # a warning, it must not block downstream
    assert (daily["energy_conservation"]["description"] or "").strip()
    assert (daily["telemetry_coverage"]["description"] or "").strip()

    request = _checks(server, "marts/fct_request_energy")
    assert {"no_negative_energy", "single_request_rule"} <= set(request), sorted(request)

    assert nodes["marts/fct_cluster_energy_daily"]["hasAssetChecks"] is True
    assert nodes["marts/fct_request_energy"]["hasAssetChecks"] is True


# ------------------------------------------------------------------------------------------ location and start-up


def test_code_location_is_named_inference_impact(server: Server):
    entries = server.graphql(WORKSPACE_QUERY)["workspaceOrError"]["locationEntries"]
    assert [e["name"] for e in entries] == [LOCATION_NAME]


def test_make_ui_starts_without_warnings(server: Server):
    """Nothing a user would read as a problem on start-up: Dagster's warning that the location's name differs
    from pyproject's (it was printed dozens of times), its advice to use `dg dev`, any Python warning."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", server.log_tail(200_000))
    assert "Serving dagster-webserver" in log, log[-3000:]
    problems = [line for line in log.splitlines() if re.search(r"warning|error|traceback", line, re.IGNORECASE)]
    assert not problems, "\n".join(problems[:10])


# ----------------------------------------------------------------------------------------------- in a browser


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium: skipped when it is not installed, except under CI=true, where that is a failure (.ci/run
    installs Debian's chromium)."""
    if not cdp_available():
        message = "chromium not installed (Debian: apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + ": CI must have it (.ci/run installs it)")
        pytest.skip(message)
    with Browser(chromium_executable(), timeout_s=90.0) as b:
        yield b


GRAPH_NODES_JS = "Array.from(document.querySelectorAll('svg foreignObject')).map(e => e.textContent)"


def _page_text(browser: Browser, url: str, *needles: str) -> str:
    """Open a page and return its visible text once every needle shows in it (the UI loads its data after the
    page)."""
    browser.open(url)
    condition = " && ".join(f"document.body.innerText.includes({json.dumps(n)})" for n in needles)
    return browser.wait_for(f"{condition} && document.body.innerText", what=f"{', '.join(needles)} on {url}")


def _graph_nodes(browser: Browser, expected: set[str], known: set[str]) -> set[str]:
    """The names of the lineage graph's nodes (each node's text starts with its name, then its status), once every
    expected name is drawn. A node whose name is not in ``known`` is returned as its whole text."""
    names = ", ".join(f"'{n}'" for n in sorted(expected))
    browser.wait_for(
        f"(() => {{ const nodes = {GRAPH_NODES_JS}; "
        f"return [{names}].every(n => nodes.some(t => t.startsWith(n))); }})()",
        what=f"graph nodes {sorted(expected)}",
    )
    drawn = set()
    for text in browser.evaluate(GRAPH_NODES_JS):
        matches = [n for n in known if text.startswith(n)]
        drawn.add(max(matches, key=len) if matches else text)
    return drawn


def test_lineage_page_draws_every_group(server: Server, browser: Browser):
    """The global lineage page (what `make ui` opens on) draws one node per group of the snapshot."""
    browser.open(f"{server.url}/asset-groups")
    assert _graph_nodes(browser, set(EXPECTED_KEYS), set(EXPECTED_KEYS)) == set(EXPECTED_KEYS)
    assert browser.console_errors == [], browser.console_errors


def test_group_graph_draws_the_marts_with_their_checks(server: Server, browser: Browser):
    """A group's lineage draws its assets (and their neighbours) as nodes; a mart's node shows its asset checks,
    all passed on the demo."""
    browser.open(f"{server.url}/locations/{LOCATION_NAME}/asset-groups/marts/lineage")
    marts = {key.split("/")[1] for key in EXPECTED_KEYS["marts"]}
    names = {key.split("/")[1] for key in ALL_KEYS}
    nodes = _graph_nodes(browser, marts, names)
    assert nodes <= names, nodes - names  # nothing but assets of the snapshot: the marts and their neighbours
    daily = browser.wait_for(
        f"{GRAPH_NODES_JS}.find(t => t.startsWith('fct_cluster_energy_daily') && /Asset checks.*Passed/.test(t))",
        what="the asset checks on fct_cluster_energy_daily's node",
    )
    passed = re.search(r"Asset checks\s*(\d+)\s*/\s*(\d+)\s*Passed", daily)
    assert passed and passed.group(1) == passed.group(2) and int(passed.group(1)) >= 2, daily


def test_asset_page_lists_its_checks_and_their_results(server: Server, browser: Browser):
    """The checks tab of a mart lists the Python invariants and the dbt tests, each with the demo run's result."""
    text = _page_text(
        browser, f"{server.url}/assets/marts/fct_cluster_energy_daily?view=checks&checkDetail=energy_conservation",
        "energy_conservation", "telemetry_coverage", "fct_cluster_energy_daily_row_invariants", "Succeeded",
    )
    assert "This is a blocking asset check." in text  # energy_conservation blocks what is downstream


def test_failed_warning_shows_what_it_means(server: Server, browser: Browser):
    """The demo's fit_quality warning: the UI shows the check's one-line explanation next to its result."""
    text = _page_text(
        browser, f"{server.url}/assets/models/energy_model_fits?view=checks&checkDetail=fit_quality",
        "Evaluation result", "batching",
    )
    assert "This is a non-blocking asset check." in text and "Failed" in text
    assert "docs/models.md#fit-quality" in text


def test_location_page_lists_inference_impact(server: Server, browser: Browser):
    assert "Loaded" in _page_text(browser, f"{server.url}/locations", LOCATION_NAME)


def test_report_asset_shows_the_days_charts(server: Server, browser: Browser):
    """reports/daily_report's materialisation (from the demo's `impact run`) lists each chart of the day as
    metadata; the charts themselves are PNGs embedded in that markdown."""
    text = _page_text(browser, f"{server.url}/assets/reports/daily_report", "chart/hourly_carbon")
    for chart in ("energy_per_request", "hourly_carbon", "facility_split", "top_carbon", "fitted_vs_observed"):
        assert f"chart/{chart}" in text, chart
    assert "2023-11-16" in text
