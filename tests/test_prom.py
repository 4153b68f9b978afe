"""Prometheus text exposition parsing (orchestration.lib.ingestion.prom) on real exporter scrapes and edge cases."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb
import pytest
from conftest import rows

from orchestration.lib.ingestion.prom import prom_samples_to_long, read_prom_lines
from orchestration.lib.ingestion.textlines import read_text_lines

FIXTURES = Path(__file__).parent / "fixtures" / "prom"
DCGM = FIXTURES / "dcgm_exporter_T4_excerpt.prom"
TRITON = FIXTURES / "triton_metrics_T4_excerpt.prom"
VLLM = FIXTURES / "vllm_metrics_opt125m_excerpt.prom"
TRITON_GPU = "GPU-951eeeeb-d284-d263-688e-d98a5306389b"

LINE_COLUMNS = ["source_row", "raw_record", "metric", "labels", "value", "timestamp_s", "parse_error"]
LONG_COLUMNS = [
    "source_row", "raw_record", "timestamp_s", "cluster", "node", "gpu", "metric", "value", "cpu", "mode",
    "parse_error", "gpu_uuid", "pci_bus_id",
]  # fmt: skip



def by_metric(rel: duckdb.DuckDBPyRelation, metric: str) -> list[dict]:
    return [r for r in rows(rel) if r["metric"] == metric]


def write(tmp_path: Path, text: str, name: str = "x.prom", newline: str = "\n") -> str:
    path = tmp_path / name
    path.write_bytes(text.replace("\n", newline).encode())
    return str(path)


# ---------------------------------------------------------------------------------------------------------------
# Real scrapes
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path,samples", [(DCGM, 12), (TRITON, 30), (VLLM, 35)])
def test_every_sample_line_comes_back_once_unparsed_errors_none(con, path, samples):
    lines = path.read_text().split("\n")
    expected = {i + 1: line for i, line in enumerate(lines) if line.strip() and not line.startswith("#")}
    assert len(expected) == samples

    rel = read_prom_lines(con, str(path))
    assert rel.columns == LINE_COLUMNS
    assert [str(t) for t in rel.types] == [
        "BIGINT", "VARCHAR", "VARCHAR", "MAP(VARCHAR, VARCHAR)", "DOUBLE", "DOUBLE", "VARCHAR",
    ]  # fmt: skip
    got = rows(rel)
    assert [r["source_row"] for r in got] == sorted(expected)  # file order, one row per sample line
    assert {r["source_row"]: r["raw_record"] for r in got} == expected
    assert [r for r in got if r["parse_error"] is not None] == []
    assert all(r["metric"] and r["value"] is not None and r["timestamp_s"] is None for r in got)


def test_dcgm_t4_power_and_energy(con):
    rel = read_prom_lines(con, str(DCGM))
    (power,) = by_metric(rel, "DCGM_FI_DEV_POWER_USAGE")
    assert power["value"] == pytest.approx(8.969)
    assert power["source_row"] == 12
    assert power["labels"] == {
        "gpu": "0",
        "UUID": "GPU-20c56d28-0da5-6d26-a36a-e7af1ce2586e",
        "device": "nvidia0",
        "modelName": "Tesla T4",
        "Hostname": "424773df46e0",
        "DCGM_FI_DRIVER_VERSION": "460.106.00",
        "DCGM_FI_PROCESS_NAME": "/usr/bin/dcgm-exporter",
    }
    (energy,) = by_metric(rel, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")
    assert energy["value"] == 128996013.0  # mJ since boot

    long = prom_samples_to_long(con, rel, default_cluster="t4-lab", default_timestamp_s=1_700_000_000.0)
    assert long.columns == LONG_COLUMNS
    (p,) = by_metric(long, "DCGM_FI_DEV_POWER_USAGE")
    assert (p["cluster"], p["node"], p["gpu"], p["timestamp_s"], p["value"]) == (
        "t4-lab", "424773df46e0", "0", 1_700_000_000.0, pytest.approx(8.969),
    )  # fmt: skip
    assert p["cpu"] is None and p["mode"] is None and p["parse_error"] is None
    assert all(r["parse_error"] is None for r in rows(long))


def test_scrapes_without_timestamps_are_flagged_in_long_format(con):
    long = rows(prom_samples_to_long(con, read_prom_lines(con, str(DCGM))))
    assert len(long) == 12
    assert {r["parse_error"] for r in long} == {"sample has no timestamp"}
    assert {r["cluster"] for r in long} == {None}


def test_triton_energy_gpu_uuid_and_unlabelled_cpu(con):
    rel = read_prom_lines(con, str(TRITON))
    (energy,) = by_metric(rel, "nv_energy_consumption")
    assert energy["value"] == 4879631.328000044  # J since Triton start, full double precision
    assert energy["labels"] == {"gpu_uuid": TRITON_GPU}
    (power,) = by_metric(rel, "nv_gpu_power_usage")
    assert power["value"] == 32.09
    (cpu,) = by_metric(rel, "nv_cpu_utilization")
    assert cpu["labels"] == {} and cpu["value"] == 0.0 and cpu["raw_record"] == "nv_cpu_utilization 0"
    (cache,) = by_metric(rel, "nv_cache_util")
    assert cache["value"] == 0.0001220703125
    densenet = [
        r
        for r in by_metric(rel, "nv_inference_request_duration_us")
        if r["labels"]["model"] == "densenet_onnx"
    ]
    assert [r["value"] for r in densenet] == [1327965.0]

    long = prom_samples_to_long(con, rel, default_cluster="triton", default_timestamp_s=0.0)
    (e,) = by_metric(long, "nv_energy_consumption")
    assert (e["gpu"], e["node"], e["cluster"]) == (TRITON_GPU, None, "triton")
    (c,) = by_metric(long, "nv_cpu_utilization")
    assert (c["gpu"], c["node"], c["timestamp_s"]) == (None, None, 0.0)


def test_vllm_colon_names_and_histogram_buckets(con):
    rel = read_prom_lines(con, str(VLLM))
    got = rows(rel)
    assert all(r["metric"].startswith("vllm:") for r in got)
    assert len({r["metric"] for r in got}) == 26  # 11 plain series + 5 histograms x (bucket, count, sum)
    buckets = by_metric(rel, "vllm:time_to_first_token_seconds_bucket")
    assert [(r["labels"]["le"], r["value"]) for r in buckets] == [("0.25", 0.0), ("0.5", 1.0), ("+Inf", 1.0)]
    assert all(r["labels"]["model_name"] == "facebook/opt-125m" for r in buckets)
    inf_buckets = [r for r in got if r["labels"].get("le") == "+Inf"]
    assert len(inf_buckets) == 5
    (ttft_sum,) = by_metric(rel, "vllm:time_to_first_token_seconds_sum")
    assert ttft_sum["value"] == 0.31326723098754883
    (info,) = by_metric(rel, "vllm:cache_config_info")
    assert len(info["labels"]) == 10 and info["labels"]["num_gpu_blocks_override"] == "None"
    (success,) = by_metric(rel, "vllm:request_success_total")
    assert success["labels"] == {"finished_reason": "length", "model_name": "facebook/opt-125m"}


# ---------------------------------------------------------------------------------------------------------------
# Synthetic edge cases
# ---------------------------------------------------------------------------------------------------------------

EDGE = """\
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{gpu="1",UUID="GPU-x",Hostname="node-a",cluster="c1"} 251.5 1700000000123

  # an indented comment
up{instance="node-b:9100",job="node"} 1 1700000000000
esc{path="C:\\\\dir\\\\",msg="say \\"hi\\"\\nbye",brace="}{,=",} 2.5e-3 -1000
broken line with spaces
missing_value{a="b"}
v{a=b} 1
v{a="1",a="2"} 1
v{a="1"} abc
v{a="1"} 1 12:00
nan_metric NaN 1700000000000
inf_metric +Inf 1700000000000
neg_inf_metric{gpu=""} -Inf 1700000000000
sci 1.5E+3 1700000000000
node_cpu_seconds_total{cpu="3",mode="idle",instance="node-c:9100"} 12345.67 1700000001000
node_memory_MemFree_bytes{instance="node-c:9100"} 1e9 1700000001000
"""


def test_edge_cases_line_by_line(con, tmp_path):
    got = {r["source_row"]: r for r in rows(read_prom_lines(con, write(tmp_path, EDGE)))}
    assert sorted(got) == [3, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]

    assert got[3]["timestamp_s"] == 1700000000.123  # milliseconds -> seconds
    assert got[3]["labels"]["Hostname"] == "node-a"
    assert got[6]["timestamp_s"] == 1700000000.0

    esc = got[7]
    assert esc["parse_error"] is None
    assert esc["labels"] == {"path": "C:\\dir\\", "msg": 'say "hi"\nbye', "brace": "}{,="}
    assert esc["value"] == 0.0025 and esc["timestamp_s"] == -1.0

    assert (got[8]["parse_error"], got[8]["metric"], got[8]["labels"], got[8]["value"]) == (
        "malformed sample line", None, None, None,
    )  # fmt: skip
    assert got[8]["raw_record"] == "broken line with spaces"
    assert got[9]["parse_error"] == "malformed sample line"
    assert (got[10]["parse_error"], got[10]["metric"], got[10]["labels"]) == ("malformed labels", "v", None)
    assert got[11]["parse_error"] == "duplicate label name"
    assert (got[12]["parse_error"], got[12]["value"], got[12]["labels"]) == (
        "non-numeric value 'abc'",
        None,
        {"a": "1"},
    )
    assert (got[13]["parse_error"], got[13]["timestamp_s"], got[13]["value"]) == (
        "non-numeric timestamp",
        None,
        1.0,
    )

    assert math.isnan(got[14]["value"]) and got[14]["parse_error"] is None
    assert got[15]["value"] == math.inf and got[16]["value"] == -math.inf
    assert got[17]["value"] == 1500.0
    assert all(got[i]["parse_error"] is None for i in (3, 6, 7, 14, 15, 16, 17, 18, 19))


def test_edge_cases_long_format(con, tmp_path):
    long = {
        r["source_row"]: r
        for r in rows(prom_samples_to_long(con, read_prom_lines(con, write(tmp_path, EDGE)), "dflt"))
    }
    assert (long[3]["cluster"], long[3]["node"], long[3]["gpu"]) == ("c1", "node-a", "1")  # gpu before UUID
    assert (long[6]["cluster"], long[6]["node"], long[6]["gpu"]) == ("dflt", "node-b:9100", None)
    assert long[16]["gpu"] is None  # an empty label value is an absent label
    cpu = long[18]
    assert (cpu["metric"], cpu["cpu"], cpu["mode"], cpu["node"], cpu["timestamp_s"]) == (
        "node_cpu_seconds_total", "3", "idle", "node-c:9100", 1700000001.0,
    )  # fmt: skip
    assert (long[19]["cpu"], long[19]["mode"]) == (None, None)
    # A line's own parse error wins over the missing timestamp; a parsed sample without one is flagged.
    assert long[8]["parse_error"] == "malformed sample line"
    assert long[12]["parse_error"] == "non-numeric value 'abc'"
    assert long[13]["parse_error"] == "non-numeric timestamp"
    assert long[7]["parse_error"] is None


def test_crlf_and_no_trailing_newline(con, tmp_path):
    text = '# TYPE a gauge\na{x="1"} 1 1000\n\nb 2 2000'
    for newline in ("\n", "\r\n"):
        got = rows(read_prom_lines(con, write(tmp_path, text, f"n{len(newline)}.prom", newline)))
        assert [(r["source_row"], r["raw_record"], r["value"], r["timestamp_s"]) for r in got] == [
            (2, 'a{x="1"} 1 1000', 1.0, 1.0),
            (4, "b 2 2000", 2.0, 2.0),
        ]
        assert all(r["parse_error"] is None for r in got)


def test_openmetrics_seconds_timestamps_eof_and_exemplars(con, tmp_path):
    text = (
        "# TYPE gpu_power_watts gauge\n"
        'gpu_power_watts{gpu="0"} 231.25 1700000000.250\n'
        'req_latency_seconds_bucket{le="0.5"} 3 1700000001 # {trace_id="abc"} 0.42 1700000000.9\n'
        "# EOF\n"
    )
    got = rows(read_prom_lines(con, write(tmp_path, text), timestamp_unit="s"))
    assert [(r["source_row"], r["value"], r["timestamp_s"], r["parse_error"]) for r in got] == [
        (2, 231.25, 1700000000.25, None),
        (3, 3.0, 1700000001.0, None),
    ]
    with pytest.raises(ValueError):
        read_prom_lines(con, write(tmp_path, text), timestamp_unit="us")


def test_long_lines_and_line_numbers_past_blank_lines(con, tmp_path):
    long_value = "x" * 3_000_000  # beyond DuckDB's default CSV max_line_size (2 MB)
    text = "\n\n# c\n" + f'big{{blob="{long_value}"}} 7 1000\n' + "\n" * 5 + "after 1 2000\n"
    got = rows(read_prom_lines(con, write(tmp_path, text)))
    assert [(r["source_row"], r["value"]) for r in got] == [(4, 7.0), (10, 1.0)]
    assert len(got[0]["labels"]["blob"]) == 3_000_000


def test_text_lines_numbering(con, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"\xef\xbb\xbfa\r\n\r\nb\n\n")
    assert read_text_lines(con, str(path)).fetchall() == [
        (1, "a", None), (2, "", None), (3, "b", None), (4, "", None),
    ]
    path.write_bytes(b"")
    assert read_text_lines(con, str(path)).fetchall() == []
    with pytest.raises(FileNotFoundError):
        read_text_lines(con, str(tmp_path / "missing.prom"))


def test_path_is_a_value_not_sql(con, tmp_path):
    odd = tmp_path / "it's; drop table x; --.prom"
    odd.write_text("m 1 1000\n")
    assert rows(read_prom_lines(con, str(odd)))[0]["value"] == 1.0
