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
    ({{ epoch_us('cast(' ~ partition_day() ~ ' as timestamp)') }} / 1e6)
{%- endmacro %}

{#- Epoch seconds (double) of a timestamp column. -#}
{% macro epoch_s(column) -%}
    ({{ epoch_us(column) }} / 1e6)
{%- endmacro %}
