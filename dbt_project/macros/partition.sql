{#-
    The UTC day being materialised, as a SQL date literal: the var partition_day, else the environment variable
    IMPACT_PARTITION_DAY (what Dagster sets). The environment is read only at execution time, so a new day does not
    invalidate dbt's partial parse (a changed --vars forces a full re-parse). Fails loudly when neither is set.
-#}
{% macro partition_day() -%}
    {%- set day = var('partition_day') -%}
    {%- if day is none and execute -%}
        {%- set day = env_var('IMPACT_PARTITION_DAY', '') or none -%}
    {%- endif -%}
    {%- if day is none -%}
        {%- if execute -%}
            {{ exceptions.raise_compiler_error(
                "var 'partition_day' or env IMPACT_PARTITION_DAY (YYYY-MM-DD) is required to build " ~ this) }}
        {%- endif -%}
        date '1970-01-01'
    {%- else -%}
        {%- set day = day | string -%}
        {#- only YYYY-MM-DD reaches the SQL: the value comes from the environment, never trusted as SQL -#}
        {%- if day | length != 10 or day[4] != '-' or day[7] != '-' or (day | replace('-', '')) | int(-1) < 0
              or (day | replace('-', '')) | length != 8 -%}
            {{ exceptions.raise_compiler_error("partition day must be YYYY-MM-DD, not '" ~ day ~ "'") }}
        {%- endif -%}
        date '{{ day }}'
    {%- endif -%}
{%- endmacro %}

{#- Epoch seconds of the partition's first instant. -#}
{% macro partition_day_epoch_s() -%}
    (epoch_us(cast({{ partition_day() }} as timestamp)) / 1e6)
{%- endmacro %}

{#- Epoch seconds (double) of a timestamp column. -#}
{% macro epoch_s(column) -%}
    (epoch_us({{ column }}) / 1e6)
{%- endmacro %}

{#-
    Pre-hook for day-partitioned incremental models: delete the partition's rows before inserting them again, so
    re-materialising a day replaces it (and a day whose input shrank loses its stale rows).
-#}
{% macro delete_partition(column='day') -%}
    {%- set existing = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
    {%- if existing is not none and not flags.FULL_REFRESH -%}
        delete from {{ this }} where {{ column }} = {{ partition_day() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#-
    Pre-hook of fct_request_energy (one row per request, keyed by its start day): before the day's requests are
    inserted again, delete those that started that day and those that started the day before and ran into it
    (requests last at most a day, so no others can be touched). Cheaper than delete+insert on millions of keys.
-#}
{% macro delete_requests_touched_by_partition() -%}
    {%- set existing = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
    {%- if existing is not none and not flags.FULL_REFRESH -%}
        delete from {{ this }}
        where
            day = {{ partition_day() }}
            or (
                day = {{ partition_day() }} - 1
                and request_id in (
                    select request_id from {{ ref('int_request_day_energy') }} where day = {{ partition_day() }}
                )
            )
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}

{#-
    Pre-hook of roll-ups keyed by the requests' start day: a day's materialisation can complete the requests that
    started the day before (they ran past midnight), so both days are recomputed.
-#}
{% macro delete_partition_and_previous_day(column='day') -%}
    {%- set existing = adapter.get_relation(database=this.database, schema=this.schema, identifier=this.identifier) -%}
    {%- if existing is not none and not flags.FULL_REFRESH -%}
        delete from {{ this }} where {{ column }} between {{ partition_day() }} - 1 and {{ partition_day() }}
    {%- else -%}
        select 1
    {%- endif -%}
{%- endmacro %}
