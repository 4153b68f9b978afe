{#-
    Generic data tests used across the project (no package download needed).

    The tests of a day-partitioned model take `partition_column`: they then check only the partition being built
    (that day, or `lookback_days` before it too, for roll-ups that recompute the day before), read at execution
    like the models. Every day was checked when it was built, so a daily build's tests do not grow with history.
-#}

{% macro partition_filter(partition_column, lookback_days=0) -%}
    {%- if partition_column is none -%}
        true
    {%- elif lookback_days -%}
        {{ partition_column }} between {{ partition_day() }} - {{ lookback_days }} and {{ partition_day() }}
    {%- else -%}
        {{ partition_column }} = {{ partition_day() }}
    {%- endif -%}
{%- endmacro %}

{% test non_negative(model, column_name, tolerance=0) %}
select * from {{ model }} where {{ column_name }} < -{{ tolerance }}
{% endtest %}

{% test unique_combination_of_columns(model, columns, partition_column=none, lookback_days=0) %}
select {{ columns | join(', ') }}, count(*) as copies
from {{ model }}
where {{ partition_filter(partition_column, lookback_days) }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{% test between(model, column_name, min_value, max_value) %}
select * from {{ model }}
where {{ column_name }} < {{ min_value }} or {{ column_name }} > {{ max_value }}
{% endtest %}

{% test expression_is_true(model, expression) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}

{#-
    Every per-row rule of a table in one scan (per-column not_null / non_negative / accepted_values tests would each
    scan it again): fails the rows where a listed column is null, a listed quantity is negative, a column is not
    one of its accepted values, or the expression is not true (a null expression counts as not true).
-#}
{% test row_invariants(
    model, not_null=[], non_negative=[], accepted_values={}, expression='true', partition_column=none,
    lookback_days=0
) %}
select * from {{ model }}
where {{ partition_filter(partition_column, lookback_days) }}
and not coalesce(
    {%- for column in not_null %}
        {{ column }} is not null and
    {%- endfor %}
    {%- for column in non_negative %}
        {{ column }} >= 0 and
    {%- endfor %}
    {%- for column, values in accepted_values.items() %}
        {{ column }} in ({% for v in values %}'{{ v }}'{{ ', ' if not loop.last }}{% endfor %}) and
    {%- endfor %}
    ({{ expression }}),
    false
)
{% endtest %}
