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
