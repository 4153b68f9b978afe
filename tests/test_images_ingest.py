"""Image requests in every input format: fields loaded, defaults and quality labels filled in, every bad field
rejected with a reason naming it (orchestration.lib.images.requests through orchestration.lib.ingestion.ingest)."""

import datetime as dt
import json

import duckdb
import pandas as pd
import pytest
from conftest import TINY_CLUSTER, write_clusters

from orchestration.lib.ingestion import ingest
from orchestration.lib.warehouse import warehouse

DAY = dt.date(2024, 5, 1)
BASE = {"cluster": "c1", "model": "sdxl", "start_time": "2024-05-01T10:00:00Z", "duration_s": 3.5}
IMAGE = {**BASE, "modality": "image", "width": 1024, "height": 768, "steps": 30}

# (record, the reason it must be rejected with; None = loaded)
IMAGE_RECORDS = [
    (
        {
            **IMAGE,
            "request_id": "i-ok",
            "images": 2,
            "strength": 0.6,
            "input_width": 512,
            "input_height": 512,
            "guidance": "off",
            "lora": ["pixel-art", "  anime "],
        },
        None,
    ),
    (
        {**BASE, "request_id": "i-defaults", "modality": "Image", "width": 512, "height": 512, "steps": 20},
        None,
    ),
    ({**BASE, "request_id": "i-quality", "modality": "image", "quality": "HD"}, None),
    (
        {
            **BASE,
            "request_id": "i-quality-steps",
            "modality": "image",
            "quality": "standard",
            "steps": 12,
            "width": 640,
            "height": 480,
        },
        None,
    ),
    ({**BASE, "request_id": "t-lora", "input_tokens": 10, "output_tokens": 5, "lora": "sql-adapter"}, None),
    ({**BASE, "request_id": "t-plain", "input_tokens": 10, "output_tokens": 5, "modality": "text"}, None),
    ({**IMAGE, "request_id": "i-prompt", "input_tokens": 77}, None),
    ({**IMAGE, "request_id": "b1", "modality": "video"}, "unknown modality 'video' (text or image)"),
    (
        {**BASE, "request_id": "b2", "width": 512, "height": 512, "input_tokens": 3},
        "image field width, height on a text request (modality is text: set modality to image)",
    ),
    ({**IMAGE, "request_id": "b3", "width": "wide"}, "non-numeric width 'wide'"),
    ({**IMAGE, "request_id": "b4", "height": -768}, "height must be at least 1 (-768)"),
    ({**IMAGE, "request_id": "b5", "width": 1024.5}, "non-integer width (1024.5)"),
    ({**IMAGE, "request_id": "b6", "steps": 0}, "steps must be at least 1 (0)"),
    ({**IMAGE, "request_id": "b7", "images": "NaN"}, "images is NaN"),
    ({**IMAGE, "request_id": "b8", "strength": 1.5}, "strength 1.5 outside 0-1"),
    ({**IMAGE, "request_id": "b9", "strength": "half"}, "non-numeric strength 'half'"),
    (
        {**IMAGE, "request_id": "b10", "guidance": "maybe"},
        "unparseable guidance 'maybe' (true/false, on/off, yes/no or 1/0)",
    ),
    (
        {**IMAGE, "request_id": "b11", "quality": "ultra"},
        "unknown quality 'ultra' (not in the quality table: factors/image_quality.csv)",
    ),
    ({**BASE, "request_id": "b12", "modality": "image", "height": 512}, "height without width"),
    ({**IMAGE, "request_id": "b13", "input_width": 512}, "input_width without input_height"),
    (
        {**BASE, "request_id": "b14", "modality": "image", "input_tokens": 5, "output_tokens": 9},
        "image request with token counts but no width, height, steps or quality (a text request?)",
    ),
    (
        {**IMAGE, "request_id": "b15", "lora": "a;;b"},
        "malformed lora 'a;;b' (a list of adapter names: JSON list, or names separated by , ; or |)",
    ),
    (
        {**BASE, "request_id": "b16", "input_tokens": 1, "lora": [{"name": "x"}]},
        """malformed lora '[{"name":"x"}]' (a list of adapter names: JSON list, or names separated by , ; or |)""",
    ),
    ({**IMAGE, "request_id": "b17", "width": 100000}, "implausible width (100000 px, above 65,536)"),
    (
        {**BASE, "request_id": "b18", "steps": 30, "quality": "hd"},
        "image field steps, quality on a text request (modality is text: set modality to image)",
    ),
]

LOADED = {
    # request_id: (modality, width, height, images, steps, strength, input_width, input_height, guidance, quality,
    #              lora)
    "i-ok": ("image", 1024, 768, 2, 30, 0.6, 512, 512, False, None, ["anime", "pixel-art"]),
    "i-defaults": ("image", 512, 512, 1, 20, 1.0, None, None, True, None, None),
    # the label's steps and size (data/factors/image_quality.csv: hd = 50 steps, 1024 x 1024)
    "i-quality": ("image", 1024, 1024, 1, 50, 1.0, None, None, True, "HD", None),
    # the request's own steps and size win over the label's
    "i-quality-steps": ("image", 640, 480, 1, 12, 1.0, None, None, True, "standard", None),
    "t-lora": ("text", None, None, None, None, None, None, None, None, None, ["sql-adapter"]),
    "t-plain": ("text", None, None, None, None, None, None, None, None, None, None),
    "i-prompt": ("image", 1024, 768, 1, 30, 1.0, None, None, True, None, None),
}
COLUMNS = (
    "modality, width, height, images, steps, strength, input_width, input_height, guidance, quality, lora"
)


@pytest.fixture
def data_dir(tmp_path):
    data = tmp_path / "inputs"
    (data / "requests").mkdir(parents=True)
    (data / "telemetry").mkdir()
    write_clusters(data / "clusters.yml", [TINY_CLUSTER])
    return data


def _ingest(data, tmp_path, name="wh.duckdb"):
    with warehouse(tmp_path / name) as con:
        ingest.ingest_clusters(con, data)
        summary = ingest.ingest_requests(con, data, DAY)
        loaded = {
            r[0]: tuple(r[1:])
            for r in con.execute(f"select request_id, {COLUMNS} from raw.requests").fetchall()
        }
        rejected = con.execute(
            "select source_row, reason from raw.rejected_rows where input = 'requests' order by source_row"
        ).fetchall()
    return summary, loaded, rejected


def test_every_bad_image_field_is_rejected_with_its_reason(data_dir, tmp_path):
    lines = [json.dumps({k: v for k, v in record.items()}) for record, _ in IMAGE_RECORDS]
    (data_dir / "requests" / "images.jsonl").write_text("\n".join(lines) + "\n")
    summary, loaded, rejected = _ingest(data_dir, tmp_path)
    want = {i + 1: reason for i, (_, reason) in enumerate(IMAGE_RECORDS) if reason}
    assert dict(rejected) == want
    assert loaded == LOADED
    assert summary.loaded + summary.rejected == len(IMAGE_RECORDS)


def _csv_value(v):
    return ";".join(v) if isinstance(v, list) else v


def test_same_image_rows_from_csv_and_parquet(data_dir, tmp_path):
    good = [record for record, reason in IMAGE_RECORDS if reason is None]
    frame = pd.DataFrame(good)
    frame.assign(lora=frame["lora"].map(_csv_value)).to_csv(data_dir / "requests" / "r.csv", index=False)
    _, from_csv, rejected = _ingest(data_dir, tmp_path, "csv.duckdb")
    assert rejected == [] and from_csv == LOADED
    (data_dir / "requests" / "r.csv").unlink()
    # typed columns; lora as a list column (a text request's empty list: no adapters)
    typed = frame.assign(
        lora=frame["lora"].map(lambda v: v if isinstance(v, list) else ([v] if isinstance(v, str) else [])),
        start_time=pd.to_datetime(frame["start_time"]),
    )
    typed.to_parquet(data_dir / "requests" / "r.parquet", index=False)
    _, from_parquet, rejected = _ingest(data_dir, tmp_path, "parquet.duckdb")
    assert rejected == [] and from_parquet == LOADED


def _span(span_id, attributes):
    def value(v):
        if isinstance(v, list):
            return {"arrayValue": {"values": [{"stringValue": x} for x in v]}}
        if isinstance(v, bool):
            return {"boolValue": v}
        if isinstance(v, int):
            return {"intValue": str(v)}
        return {"stringValue": str(v)}

    return {
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id, "name": "images.generate",
        "startTimeUnixNano": "1714557600000000000", "endTimeUnixNano": "1714557603500000000",
        "attributes": [{"key": k, "value": value(v)} for k, v in attributes.items()],
    }  # fmt: skip


def test_otlp_image_spans(data_dir, tmp_path):
    spans = [
        _span("0000000000000001", {
            "gen_ai.request.model": "sdxl", "gen_ai.output.type": "image", "gen_ai.request.image.size": "1024x768",
            "gen_ai.request.choice.count": 2, "gen_ai.request.image.steps": 30, "gen_ai.request.image.strength": "0.6",
            "gen_ai.request.image.input_width": 512, "gen_ai.request.image.input_height": 512,
            "gen_ai.request.image.guidance": False, "gen_ai.request.lora": ["pixel-art", "anime"],
        }),
        _span("0000000000000002", {
            "gen_ai.request.model": "sdxl", "gen_ai.operation.name": "image_generation",
            "gen_ai.request.image.quality": "hd",
        }),
        # a text span's choice count is not an image count
        _span("0000000000000003", {
            "gen_ai.request.model": "llama", "gen_ai.request.choice.count": 3, "gen_ai.usage.input_tokens": 4,
            "gen_ai.usage.output_tokens": 6, "gen_ai.request.lora": "sql-adapter",
        }),
        _span("0000000000000004", {
            "gen_ai.request.model": "sdxl", "gen_ai.output.type": "image", "gen_ai.request.image.size": "large",
        }),
        _span("0000000000000005", {"gen_ai.request.model": "tts", "gen_ai.output.type": "speech"}),
    ]  # fmt: skip
    line = {"resourceSpans": [{"resource": {"attributes": [{"key": "inference.cluster",
                                                            "value": {"stringValue": "c1"}}]},
                               "scopeSpans": [{"spans": spans}]}]}  # fmt: skip
    (data_dir / "requests" / "s.otlp.json").write_text(json.dumps(line) + "\n")
    _, loaded, rejected = _ingest(data_dir, tmp_path)
    trace = "5b8efff798038103d269b633813fc60c:"
    assert loaded == {
        trace + "0000000000000001": (
            "image",
            1024,
            768,
            2,
            30,
            0.6,
            512,
            512,
            False,
            None,
            ["anime", "pixel-art"],
        ),
        trace + "0000000000000002": ("image", 1024, 1024, 1, 50, 1.0, None, None, True, "hd", None),
        trace + "0000000000000003": (
            "text",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            ["sql-adapter"],
        ),
    }
    assert [reason for _, reason in rejected] == [
        "non-numeric width 'large'",
        "unknown modality 'speech' (text or image)",
    ]


def test_a_users_quality_table_overrides_the_shipped_labels(data_dir, tmp_path):
    """Through the factor loader: the user's rows replace the shipped ones by (model, label); a model's own row
    wins over the row for every model."""
    from orchestration import settings
    from orchestration.lib.factors import load_factors

    (data_dir / "factors").mkdir()
    (data_dir / "factors" / "image_quality.csv").write_text(
        "quality,model,steps,width,height\nhd,,40,,\nhd,stabilityai/SDXL,60,1536,1536\nbad,,0,,\n"
    )
    # LoRA adapters are models.yml entries with base_model; their footprint is fine-tuning
    (data_dir / "factors" / "models.yml").write_text(
        "models:\n"
        "  - {model: pixel-art-xl, base_model: sdxl, fine_tuning_kg_co2e: 1.5, projected_lifetime_inferences: 1.0e+6}\n"
        "  - {model: trained-adapter, base_model: sdxl, training_kg_co2e: 3}\n"
        "  - {model: loop-xl, base_model: Loop-XL}\n"
    )
    records = [{**BASE, "request_id": f"q{i}", "modality": "image", "quality": "hd", "model": m}
               for i, m in enumerate(["sdxl", "flux"])]  # fmt: skip
    (data_dir / "requests" / "q.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    with warehouse(tmp_path / "wh.duckdb") as con:
        load_factors(con, data_dir, settings.SHIPPED_FACTORS_DIR)
        ingest.ingest_clusters(con, data_dir)
        ingest.ingest_requests(con, data_dir, DAY)
        got = con.execute("select model, steps, width, height from raw.requests order by model").fetchall()
        bad = con.execute(
            "select reason from raw.rejected_rows where input = 'factors/image_quality'"
        ).fetchall()
        adapters = con.execute(
            "select model, base_model from factors.models where base_model is not null"
        ).fetchall()
        refused = con.execute(
            "select reason from raw.rejected_rows where input = 'factors/models' order by source_row"
        ).fetchall()
    assert got == [("flux", 40, None, None), ("sdxl", 60, 1536, 1536)]
    assert bad == [("steps (0) is not positive",)]
    assert adapters == [("pixel-art-xl", "sdxl")]
    trained = "training_kg_co2e on adapter 'trained-adapter' (base_model 'sdxl'): an adapter's footprint is "
    assert refused == [(trained + "fine_tuning_kg_co2e",), ("model 'loop-xl' is its own base_model",)]


def test_a_warehouse_with_the_placeholder_columns_is_migrated(data_dir, tmp_path):
    """raw.requests of earlier versions had input_pixels, output_pixels, quality_steps and lora (text), never
    filled: they give way to the image fields, and requests load into it."""
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create schema raw")
    con.execute(
        "create table raw.requests (partition_day date not null, request_id varchar not null, cluster varchar not "
        "null, model varchar not null, start_time timestamp not null, duration_s double not null, input_tokens "
        "bigint, output_tokens bigint, tenant varchar, endpoint varchar, node varchar, gpu varchar, input_pixels "
        "bigint, output_pixels bigint, quality_steps bigint, lora varchar, source_file varchar not null, source_row "
        "bigint not null, loaded_at timestamp, request_key bigint)"
    )
    con.close()
    record = {**IMAGE_RECORDS[0][0], "request_id": "m1"}
    (data_dir / "requests" / "r.jsonl").write_text(json.dumps(record) + "\n")
    _, loaded, rejected = _ingest(data_dir, tmp_path, "old.duckdb")
    assert rejected == [] and loaded == {"m1": LOADED["i-ok"]}
    with warehouse(path) as con:
        columns = dict(con.execute(
            "select column_name, data_type from information_schema.columns where table_name = 'requests'"
        ).fetchall())  # fmt: skip
    assert columns["lora"] == "VARCHAR[]" and not {"input_pixels", "output_pixels", "quality_steps"} & set(
        columns
    )
