{#- Generic data tests used across the project (no package download needed). -#}

{% test non_negative(model, column_name, tolerance=0) %}
select * from {{ model }} where {{ column_name }} < -{{ tolerance }}
{% endtest %}

{% test unique_combination_of_columns(model, columns) %}
select {{ columns | join(', ') }}, count(*) as copies
from {{ model }}
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
    Every per-row rule of a large table in one scan (the per-column not_null / non_negative tests each scan it
    again): fails the rows where a listed column is null, a listed quantity is negative, or the expression is not
    true (a null expression counts as not true).
-#}
{% test row_invariants(model, not_null=[], non_negative=[], expression='true') %}
select * from {{ model }}
where not coalesce(
    {%- for column in not_null %}
        {{ column }} is not null and
    {%- endfor %}
    {%- for column in non_negative %}
        {{ column }} >= 0 and
    {%- endfor %}
    ({{ expression }}),
    false
)
{% endtest %}
