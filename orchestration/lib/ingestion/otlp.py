"""OpenTelemetry spans exported by the collector's file exporter (OTLP JSON, one request object a line).

Each line is an ExportTraceServiceRequest: {"resourceSpans": [{"resource": {"attributes": [...]}, "scopeSpans":
[{"scope": {...}, "spans": [{"traceId", "spanId", "name", "startTimeUnixNano", "endTimeUnixNano", "attributes",
...}]}]}]}. OTLP JSON writes int64 values (timestamps, intValue) as strings and attribute values as
{"stringValue"|"intValue"|"doubleValue"|"boolValue": ...}. Attribute names follow the OpenTelemetry GenAI semantic
conventions (gen_ai.request.model, gen_ai.response.model, gen_ai.response.id, gen_ai.usage.input_tokens,
gen_ai.usage.output_tokens; the deprecated gen_ai.usage.prompt_tokens / completion_tokens are read as fallbacks)
and the resource conventions (host.name, k8s.node.name).

Parsed set-based in DuckDB: lines are read with `read_text_lines`, each valid line is parsed once by
`json_transform` into typed structs (spans kept as JSON), the resource/scope/span nesting is flattened with nested
`list_transform` and unnested with its subscripts, each span parsed once more for its fields, and attribute arrays
become MAP(VARCHAR, VARCHAR) (values coalesced from stringValue, intValue, doubleValue, boolValue as text).
"""

from __future__ import annotations

import duckdb

from orchestration.lib.ingestion.textlines import read_text_lines

__all__ = ["parse_otlp_lines", "read_otlp_spans"]

# json_transform schema of an OTLP attribute list. Each value becomes text, whatever its JSON type: OTLP JSON
# writes intValue as a string, other encoders as a number. arrayValue, kvlistValue and bytesValue give NULL.
_ATTRIBUTES_SCHEMA = (
    '[{"key": "VARCHAR", "value": {"stringValue": "VARCHAR", "intValue": "VARCHAR", '
    '"doubleValue": "VARCHAR", "boolValue": "VARCHAR", "arrayValue": {"values": [{"stringValue": "VARCHAR"}]}}}]'
)
_SPAN_SCHEMA = (
    '{"traceId": "VARCHAR", "spanId": "VARCHAR", "startTimeUnixNano": "VARCHAR", "endTimeUnixNano": "VARCHAR", '
    f'"attributes": {_ATTRIBUTES_SCHEMA}}}'
)
_REQUEST_SCHEMA = (
    f'{{"resourceSpans": [{{"resource": {{"attributes": {_ATTRIBUTES_SCHEMA}}}, '
    '"scopeSpans": [{"spans": ["JSON"]}]}]}'
)
_NO_SPAN = "[{'r': CAST(NULL AS MAP(VARCHAR, VARCHAR)), 'span': CAST(NULL AS JSON)}]"


def _attribute_map(attributes: str) -> str:
    """SQL: MAP(VARCHAR, VARCHAR) of a transformed attribute list; NULL keys dropped, first of duplicates kept.

    The de-duplicating filter (quadratic in the attribute count) runs only on lists that need it.
    """
    entries = (
        f"list_transform({attributes}, lambda a: {{'key': a.key, 'value': "
        "coalesce(a.value.stringValue, a.value.intValue, a.value.doubleValue, a.value.boolValue, "
        "CAST(to_json(list_transform(a.value.arrayValue['values'], lambda v: v.stringValue)) AS VARCHAR))})"
    )
    keys = f"list_transform({attributes}, lambda a: a.key)"
    return (
        f"CASE WHEN len(list_distinct({keys})) = len({attributes}) THEN map_from_entries({entries}) "
        f"ELSE map_from_entries(list_filter({entries}, lambda e, i: e.key IS NOT NULL "
        f"AND list_position({keys}, e.key) = i)) END"
    )


def _whole_number(text: str) -> str:
    """SQL: BIGINT of a token count written as an integer ("374", 374, "374.0"); NULL when absent or not whole."""
    return (
        f"CASE WHEN isfinite(TRY_CAST({text} AS DOUBLE)) "
        f"AND TRY_CAST({text} AS DOUBLE) = trunc(TRY_CAST({text} AS DOUBLE)) "
        f"THEN coalesce(TRY_CAST({text} AS BIGINT), TRY_CAST(TRY_CAST({text} AS DOUBLE) AS BIGINT)) END"
    )


# Image requests (docs/images.md): the GenAI output type (gen_ai.output.type = image; also gen_ai.operation.name =
# image_generation) makes a span an image request; the image fields are span attributes under
# gen_ai.request.image.* (the size also as OpenAI's "WxH" in gen_ai.request.image.size; the image count also as
# gen_ai.request.choice.count) and the adapters as gen_ai.request.lora (an array of strings, or a string). All as
# text: ingestion validates them like CSV fields.
_IMAGE = "a['gen_ai.request.image.{}']"
_IMAGE_ATTRIBUTES = ", ".join(
    [
        (
            "coalesce(CASE lower(a['gen_ai.output.type']) WHEN 'json' THEN 'text' ELSE a['gen_ai.output.type'] END, "
            "CASE WHEN a['gen_ai.operation.name'] = 'image_generation' THEN 'image' END) AS modality"
        ),
        f"coalesce({_IMAGE.format('width')}, nullif(split_part({_IMAGE.format('size')}, 'x', 1), '')) AS width",
        f"coalesce({_IMAGE.format('height')}, nullif(split_part({_IMAGE.format('size')}, 'x', 2), '')) AS height",
        f"{_IMAGE.format('count')} AS image_count",
        "a['gen_ai.request.choice.count'] AS choice_count",
        *(f"{_IMAGE.format(f)} AS {f}" for f in ("steps", "strength", "input_width", "input_height", "guidance",
                                                 "quality")),
        "a['gen_ai.request.lora'] AS lora",
    ]
)


def read_otlp_spans(con: duckdb.DuckDBPyConnection, path: str) -> duckdb.DuckDBPyRelation:
    """Parse an OTLP JSON trace file: one row per span, plus one row per line that holds no span.

    Columns:
      source_row BIGINT (1-based line of the JSON object), span_index INTEGER (0-based position of the span in its
      line, across resource and scope nesting), raw_record VARCHAR (the span's JSON; the line for a line-level
      error), request_id VARCHAR (gen_ai.response.id, else traceId || ':' || spanId), cluster VARCHAR (resource
      inference.cluster, else cluster), node VARCHAR (resource host.name, else k8s.node.name), gpu VARCHAR (span
      gpu, gpu.id, then resource gpu, gpu.id), model VARCHAR (gen_ai.request.model, else gen_ai.response.model),
      start_time TIMESTAMP (UTC, microseconds, truncated from startTimeUnixNano), duration_s DOUBLE (exact
      nanosecond difference / 1e9), input_tokens BIGINT, output_tokens BIGINT (NULL when absent or not a whole
      number), tenant VARCHAR (tenant, else enduser.id; span then resource), endpoint VARCHAR (http.route, else
      server.address; span then resource), is_genai BOOLEAN (the span has a gen_ai.* attribute; NULL for a
      line-level error row), parse_error VARCHAR; the image fields modality, width, height, images, steps, strength,
      input_width, input_height, guidance, quality, lora as VARCHAR (see _IMAGE_ATTRIBUTES; NULL when absent).

    parse_error is NULL or one structural reason: "malformed JSON" (span_index 0, raw_record the line), "line has
    no spans", "span is not a JSON object", "span has no startTimeUnixNano", "invalid startTimeUnixNano '...'",
    "span has no endTimeUnixNano", "invalid endTimeUnixNano '...'", "span ends before it starts", "span has no
    traceId/spanId" (and no gen_ai.response.id). Missing model or tokens are not errors here. Blank lines give
    no row; a line that is not UTF-8 gives one row with its `textlines` reason. The path reaches Python's open(),
    never SQL.
    """
    return parse_otlp_lines(read_text_lines(con, path))


def parse_otlp_lines(lines: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """`read_otlp_spans` over a relation of text lines (source_row, line, line_error; `textlines.LINE_SCHEMA`),
    e.g. one chunk of a large file from `textlines.iter_line_batches`."""
    tokens = {
        name: _whole_number(f"a['{name}']")
        for name in (
            "gen_ai.usage.input_tokens",
            "gen_ai.usage.prompt_tokens",
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
        )
    }
    return (
        lines
        .filter("regexp_matches(line, '[^ \\t]')")
        .project(
            "source_row, line, line_error AS text_error, text_error IS NULL AND json_valid(line) AS valid"
        )
        # One parse of the line into typed structs; spans stay JSON (raw_record), resource maps are built once
        # per resource.
        .project(
            "source_row, line, text_error, valid, "
            f"CASE WHEN valid THEN json_transform(line, '{_REQUEST_SCHEMA}').resourceSpans END AS resource_spans"
        )
        .project(
            "source_row, line, text_error, valid, "
            "list_transform(resource_spans, lambda rs: {'r': "
            f"{_attribute_map('rs.resource.attributes')}, 'scope_spans': rs.scopeSpans}}) AS resource_spans"
        )
        .project(
            "source_row, line, text_error, valid, "
            "flatten(list_transform(resource_spans, lambda rs: flatten(list_transform(rs.scope_spans, "
            "lambda ss: list_transform(ss.spans, lambda sp: {'r': rs.r, 'span': sp}))))) AS spans"
        )
        .project(
            "source_row, line, "
            "CASE WHEN text_error IS NOT NULL THEN text_error WHEN NOT valid THEN 'malformed JSON' "
            "WHEN coalesce(len(spans), 0) = 0 THEN 'line has no spans' END AS line_error, "
            f"CASE WHEN coalesce(len(spans), 0) = 0 THEN {_NO_SPAN} ELSE spans END AS spans"
        )
        .project(
            "source_row, line, line_error, CAST(generate_subscripts(spans, 1) - 1 AS INTEGER) AS span_index, "
            "unnest(spans) AS entry"
        )
        .project(
            "source_row, span_index, line_error, entry.r AS r, "
            "coalesce(CAST(entry.span AS VARCHAR), line) AS raw_record, "
            "json_type(entry.span) AS span_type, "
            f"json_transform(entry.span, '{_SPAN_SCHEMA}') AS s"
        )
        .project(
            "source_row, span_index, line_error, raw_record, span_type, r, "
            "nullif(s.traceId, '') AS trace_id, nullif(s.spanId, '') AS span_id, "
            "nullif(s.startTimeUnixNano, '') AS start_text, nullif(s.endTimeUnixNano, '') AS end_text, "
            "TRY_CAST(s.startTimeUnixNano AS BIGINT) AS start_ns, TRY_CAST(s.endTimeUnixNano AS BIGINT) AS end_ns, "
            f"{_attribute_map('s.attributes')} AS a"
        )
        .project(
            "source_row, span_index, raw_record, "
            "coalesce(nullif(a['gen_ai.response.id'], ''), trace_id || ':' || span_id) AS request_id, "
            "coalesce(r['inference.cluster'], r['cluster']) AS cluster, "
            "coalesce(r['host.name'], r['k8s.node.name']) AS node, "
            "coalesce(a['gpu'], a['gpu.id'], r['gpu'], r['gpu.id']) AS gpu, "
            "coalesce(a['gen_ai.request.model'], a['gen_ai.response.model']) AS model, "
            "CASE WHEN start_ns > 0 THEN make_timestamp(start_ns // 1000) END AS start_time, "
            "CASE WHEN start_ns > 0 AND end_ns > 0 THEN (end_ns - start_ns) / 1e9 END AS duration_s, "
            f"{tokens['gen_ai.usage.input_tokens']} AS input_tokens_new, "
            f"{tokens['gen_ai.usage.prompt_tokens']} AS input_tokens_old, "
            f"{tokens['gen_ai.usage.output_tokens']} AS output_tokens_new, "
            f"{tokens['gen_ai.usage.completion_tokens']} AS output_tokens_old, "
            f"{_IMAGE_ATTRIBUTES}, "
            "coalesce(a['tenant'], a['enduser.id'], r['tenant'], r['enduser.id']) AS tenant, "
            "coalesce(a['http.route'], a['server.address'], r['http.route'], r['server.address']) AS endpoint, "
            "CASE WHEN line_error IS NULL THEN "
            "coalesce(len(list_filter(map_keys(a), lambda k: starts_with(k, 'gen_ai.'))) > 0, false) END "
            "AS is_genai, "
            "CASE "
            "WHEN line_error IS NOT NULL THEN line_error "
            "WHEN span_type IS DISTINCT FROM 'OBJECT' THEN 'span is not a JSON object' "
            "WHEN start_text IS NULL OR start_text = '0' THEN 'span has no startTimeUnixNano' "
            "WHEN start_ns IS NULL OR start_ns <= 0 "
            "THEN 'invalid startTimeUnixNano ' || chr(39) || left(start_text, 40) || chr(39) "
            "WHEN end_text IS NULL OR end_text = '0' THEN 'span has no endTimeUnixNano' "
            "WHEN end_ns IS NULL OR end_ns <= 0 "
            "THEN 'invalid endTimeUnixNano ' || chr(39) || left(end_text, 40) || chr(39) "
            "WHEN end_ns < start_ns THEN 'span ends before it starts' "
            "WHEN coalesce(nullif(a['gen_ai.response.id'], ''), trace_id || ':' || span_id) IS NULL "
            "THEN 'span has no traceId/spanId' "
            "END AS parse_error"
        )
        .project(
            "source_row, span_index, raw_record, request_id, cluster, node, gpu, model, start_time, duration_s, "
            "coalesce(input_tokens_new, input_tokens_old) AS input_tokens, "
            "coalesce(output_tokens_new, output_tokens_old) AS output_tokens, "
            "tenant, endpoint, is_genai, parse_error, modality, width, height, "
            # the request's choice count is its image count on an image span only (n completions on a text span)
            "CASE WHEN lower(modality) = 'image' THEN coalesce(image_count, choice_count) ELSE image_count END "
            "AS images, "
            "steps, strength, input_width, input_height, guidance, quality, lora"
        )
    )
