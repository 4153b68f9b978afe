{#-
    models.energy_model_fits, written by the Dagster `models` assets (not by dbt), when it exists and has the
    prediction-interval columns; none otherwise (a first run, before any fit), so the impact mart can still build.
    It is not a declared source on purpose: the fits are computed from the marts, and a source would close a loop
    in the asset graph. The latest fit used is named in the impact rows (prediction_fit).
-#}
{% macro energy_model_fits_relation() -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(database=target.database, schema='models', identifier='energy_model_fits') -%}
    {%- if relation is none -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set names = adapter.get_columns_in_relation(relation) | map(attribute='name') | list -%}
    {%- if 't_975' not in names -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(relation_without_database(relation)) }}
{%- endmacro %}
