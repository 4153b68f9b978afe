"""The real `dagster-webserver` serves the asset graph a user browses: start it as a subprocess on 127.0.0.1 and a
free port, load `-m orchestration.definitions`, and check lineage, groups, owners, kinds, descriptions, partitions
and asset checks through the GraphQL API (field names verified against the Dagster 1.13 server's schema)."""

from __future__ import annotations

import os
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

pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("webserver")]

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
STARTUP_TIMEOUT_S = 120.0
SHUTDOWN_GRACE_S = 15.0

from test_definitions import EXPECTED_KEYS  # the same snapshot the UI must show

ALL_KEYS = set().union(*EXPECTED_KEYS.values())
# clusters.yml and the factor tables are one snapshot each and the models and comparisons read a trailing window
# of the marts: none of them is per day (but the comparison's per-day parts, reduced with their day).
DAY_PARTS = {"marts/cmp_ecologits_day_combos", "marts/cmp_ecologits_day_bins", "models/fit_sample_days"}
UNPARTITIONED = (
    {"raw/clusters"} | EXPECTED_KEYS["factors"] | EXPECTED_KEYS["models"] | EXPECTED_KEYS["comparisons"]
) - DAY_PARTS | {"advice/settings", "advice/summary"} | {"operations/published_models", "operations/retention"}
# Which layers each layer may read from: lineage flows raw -> staging -> intermediate -> marts, never backwards.
ALLOWED_UPSTREAM_GROUPS = {
    "raw": {"raw"},
    "factors": set(),
    "staging": {"raw", "factors"},
    "intermediate": {"staging", "intermediate"},
    "marts": {"staging", "intermediate", "marts"},
    "models": {"raw", "marts", "models"},
    "comparisons": {"factors", "marts", "comparisons"},
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


def _webserver_command() -> list[str]:
    script = Path(sys.executable).parent / "dagster-webserver"
    if script.exists():
        return [str(script)]
    found = shutil.which("dagster-webserver")
    return [found] if found else [sys.executable, "-m", "dagster_webserver"]


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


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the webserver (it shuts its code server down), then SIGKILL whatever is left of the process group
    it leads (the webserver and the `dagster api grpc` child it spawned; nothing else is in that group)."""
    pgid = proc.pid  # start_new_session=True: the webserver leads its own group
    if proc.poll() is None:
        proc.terminate()
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
def server(dbt_manifest: Path, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("dagster_home")
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_WEBSERVER_")}
    env.update(
        DAGSTER_HOME=str(home),
        IMPACT_WAREHOUSE=str(home / "warehouse.duckdb"),
        IMPACT_DATA_DIR=str(REPO / "data" / "sample" / "inputs"),
        PYTHONUNBUFFERED="1",
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    for attempt in range(3):  # the free port can be taken between probing and binding: retry on a new one
        port = _free_port()
        args = [*_webserver_command(), "-h", HOST, "-p", str(port), "-m", "orchestration.definitions"]
        log = home / f"webserver-{attempt}.log"
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


def test_server_is_the_real_webserver_bound_to_loopback(server: Server):
    assert server.args[server.args.index("-h") + 1] == HOST
    assert Path(server.args[0]).name.startswith("dagster-webserver") or "dagster_webserver" in server.args
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
