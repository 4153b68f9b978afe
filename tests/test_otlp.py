"""OTLP JSON span parsing (orchestration.lib.ingestion.otlp) on collector file-exporter output."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from conftest import rows

from orchestration.lib.ingestion.otlp import read_otlp_spans

FIXTURE = Path(__file__).parent / "fixtures" / "otlp" / "spans.otlp.json"

COLUMNS = [
    ("source_row", "BIGINT"),
    ("span_index", "INTEGER"),
    ("raw_record", "VARCHAR"),
    ("request_id", "VARCHAR"),
    ("cluster", "VARCHAR"),
    ("node", "VARCHAR"),
    ("gpu", "VARCHAR"),
    ("model", "VARCHAR"),
    ("start_time", "TIMESTAMP"),
    ("duration_s", "DOUBLE"),
    ("input_tokens", "BIGINT"),
    ("output_tokens", "BIGINT"),
    ("tenant", "VARCHAR"),
    ("endpoint", "VARCHAR"),
    ("is_genai", "BOOLEAN"),
    ("parse_error", "VARCHAR"),
    *((name, "VARCHAR") for name in ("modality", "width", "height", "images", "steps", "strength", "input_width",
                                     "input_height", "guidance", "quality", "lora")),
]
FIELDS = [name for name, _ in COLUMNS[:16] if name not in ("raw_record",)]



def ts(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


# One expected tuple per row, in FIELDS order (raw_record is checked separately).
EXPECTED = [
    # line 1, resource vllm / scope vllm.tracing: chat span with gen_ai.response.id
    (1, 0, "chatcmpl-7f3a9b", "us-west-a100", "gpu-node-01", "3", "llama2-70b",
     ts("2023-11-16 18:15:46.680590"), 2.331755555, 374, 1024, "acme", "api.internal", True, None),
    # text_completion span: model from gen_ai.response.model, intValue as a JSON number, gpu.id
    (1, 1, "0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331", "us-west-a100", "gpu-node-01",
     "GPU-951eeeeb-d284-d263-688e-d98a5306389b", "mistral-7b-instruct", ts("2023-11-16 18:15:50"), 0.2500005,
     12, 40, "user-42", "/v1/completions", True, None),
    # scope fastapi: HTTP server span, not GenAI
    (1, 2, "5b8efff798038103d269b633813fc60c:53995c3f42cd8ad8", "us-west-a100", "gpu-node-01", None, None,
     ts("2023-11-16 18:15:46.600000"), 2.5, None, None, None, "/v1/chat/completions", False, None),
    # resource tgi: k8s.node.name, `cluster`, resource gpu; non-numeric input tokens -> NULL (not an error here)
    (1, 3, "4bf92f3577b34da6a3ce929d0e0e4736:00f067aa0ba902b7", "eu-h100", "gpu-node-07", "0", "falcon-40b",
     ts("2023-11-16 18:16:00.123456"), 1.0, None, None, None, None, True, None),
    # line 2: truncated JSON
    (2, 0, None, None, None, None, None, None, None, None, None, None, None, None, "malformed JSON"),
    # line 4 (line 3 is blank): span without start time, then an embeddings span with deprecated prompt_tokens
    (4, 0, "a1b2c3d4e5f60718293a4b5c6d7e8f90:1122334455667788", "us-west-a100", "gpu-node-02", None, "llama2-70b",
     None, None, 10, 20, None, None, True, "span has no startTimeUnixNano"),
    (4, 1, "a1b2c3d4e5f60718293a4b5c6d7e8f90:99aabbccddeeff00", "us-west-a100", "gpu-node-02", None, "bge-large",
     ts("2023-11-16 18:16:11"), 0.5, 64, None, None, None, True, None),
]  # fmt: skip


def test_columns_and_types(con):
    rel = read_otlp_spans(con, str(FIXTURE))
    assert list(zip(rel.columns, (str(t) for t in rel.types))) == COLUMNS


def test_every_field_of_every_row(con):
    got = rows(read_otlp_spans(con, str(FIXTURE)))
    assert [tuple(r[f] for f in FIELDS) for r in got] == EXPECTED


def test_raw_record_is_the_span_json_or_the_malformed_line(con):
    got = rows(read_otlp_spans(con, str(FIXTURE)))
    lines = FIXTURE.read_text().split("\n")
    first_line_spans = [
        span
        for rs in json.loads(lines[0])["resourceSpans"]
        for ss in rs["scopeSpans"]
        for span in ss["spans"]
    ]
    assert [json.loads(r["raw_record"]) for r in got if r["source_row"] == 1] == first_line_spans
    (bad,) = [r for r in got if r["source_row"] == 2]
    assert bad["raw_record"] == lines[1]
    assert json.loads(got[-1]["raw_record"])["spanId"] == "99aabbccddeeff00"


def test_nanosecond_precision(con):
    got = rows(read_otlp_spans(con, str(FIXTURE)))
    first = got[0]
    # 1700158546680590123 ns: microseconds kept (truncated), duration exact to the nanosecond.
    assert first["start_time"] == dt.datetime(2023, 11, 16, 18, 15, 46, 680590)
    assert first["duration_s"] == (1700158549012345678 - 1700158546680590123) / 1e9
    assert got[1]["duration_s"] == 0.2500005  # 250 000 500 ns


def test_genai_filter_counts(con):
    rel = read_otlp_spans(con, str(FIXTURE))
    assert rel.filter("parse_error IS NULL AND is_genai").aggregate("count(*)").fetchall() == [(4,)]
    assert rel.filter("parse_error IS NULL AND NOT is_genai").aggregate("count(*)").fetchall() == [(1,)]
    assert rel.filter("parse_error IS NOT NULL").aggregate("count(*)").fetchall() == [(2,)]


def _span(**fields) -> dict:
    base = {
        "traceId": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "spanId": "bbbbbbbbbbbbbbbb",
        "name": "chat m",
        "startTimeUnixNano": "1700000000000000000",
        "endTimeUnixNano": "1700000001000000000",
        "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "m"}}],
    }
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def _line(*spans, resource: dict | None = None) -> str:
    return json.dumps(
        {"resourceSpans": [{"resource": resource or {}, "scopeSpans": [{"scope": {}, "spans": list(spans)}]}]}
    )


def test_structural_errors_and_tolerant_fields(con, tmp_path):
    attrs_dupe = [
        {"key": "gen_ai.request.model", "value": {"stringValue": "first"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "second"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"doubleValue": 374.0}},
        {"key": "gen_ai.usage.output_tokens", "value": {"doubleValue": 3.7}},
        {"value": {"stringValue": "no key"}},
    ]
    lines = [
        "{}",  # 1: valid JSON, no spans
        _line(_span(endTimeUnixNano="1699999999000000000")),  # 2: ends before it starts
        _line(_span(startTimeUnixNano="soon")),  # 3
        _line(_span(endTimeUnixNano=None)),  # 4
        _line(_span(traceId=None)),  # 5: no traceId and no gen_ai.response.id
        _line(
            _span(traceId=None, attributes=[{"key": "gen_ai.response.id", "value": {"stringValue": "r-1"}}])
        ),
        _line(_span(attributes=attrs_dupe)),  # 7
        _line(_span(attributes={"not": "a list"})),  # 8: attributes not an array -> no attributes
        _line(
            _span(startTimeUnixNano=1700000000000000001, endTimeUnixNano=1700000000500000001)
        ),  # 9: numbers
        _line(42),  # 10: a span that is not an object
        "[1, 2]",  # 11: valid JSON, not a request object
    ]
    path = tmp_path / "edge.otlp.json"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    got = {r["source_row"]: r for r in rows(read_otlp_spans(con, str(path)))}
    assert sorted(got) == list(range(1, 12))
    assert {k: v["parse_error"] for k, v in got.items()} == {
        1: "line has no spans",
        2: "span ends before it starts",
        3: "invalid startTimeUnixNano 'soon'",
        4: "span has no endTimeUnixNano",
        5: "span has no traceId/spanId",
        6: None,
        7: None,
        8: None,
        9: None,
        10: "span is not a JSON object",
        11: "line has no spans",
    }
    assert got[1]["is_genai"] is None and got[1]["raw_record"] == "{}"
    assert got[6]["request_id"] == "r-1"
    assert (got[7]["model"], got[7]["input_tokens"], got[7]["output_tokens"]) == ("first", 374, None)
    assert (got[8]["model"], got[8]["is_genai"]) == (None, False)
    assert got[9]["start_time"] == dt.datetime(2023, 11, 14, 22, 13, 20) and got[9]["duration_s"] == 0.5
    assert got[5]["model"] == "m" and got[5]["is_genai"] is True


def test_many_resources_and_scopes_keep_span_order(con, tmp_path):
    resources = [
        {
            "resource": {"attributes": [{"key": "host.name", "value": {"stringValue": f"n{r}"}}]},
            "scopeSpans": [
                {"scope": {"name": f"s{s}"}, "spans": [_span(spanId=f"{r}{s}{k}") for k in range(3)]}
                for s in range(2)
            ],
        }
        for r in range(3)
    ]
    path = tmp_path / "nested.otlp.json"
    path.write_text("\n" + json.dumps({"resourceSpans": resources}) + "\n")
    got = rows(read_otlp_spans(con, str(path)))
    assert [r["span_index"] for r in got] == list(range(18))
    assert {r["source_row"] for r in got} == {2}
    assert [r["request_id"].split(":")[1] for r in got] == [
        f"{r}{s}{k}" for r in range(3) for s in range(2) for k in range(3)
    ]
    assert [r["node"] for r in got] == [f"n{r}" for r in range(3) for _ in range(6)]
