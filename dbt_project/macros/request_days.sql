{#-
    One row per request from intermediate.int_request_days (one row per request and UTC day it ran in): its id,
    the request's `attributes`, days_spanned, day (the UTC day it started), the `summed` per-day columns added up
    over the days materialised, the `maxed` ones' max, and days_materialised. The two request marts are views over
    this query.

    A request inside one day is its one row as it is; only those that ran past midnight are grouped. The table is
    named in each branch, not in an import CTE: a CTE read twice is materialised whole, and a query on the view
    that needs two columns would then read all of them.
-#}
{% macro request_days_by_request(attributes, summed, maxed=[]) %}
    select
        request_id,
        {%- for col in attributes %}
            {{ col }},
        {%- endfor %}
        days_spanned,
        day,
        {%- for col in summed + maxed %}
            {{ col }},
        {%- endfor %}
        cast(1 as bigint) as days_materialised
    from {{ ref('int_request_days') }}
    where days_spanned = 1
    union all
    select
        request_id,
        {%- for col in attributes %}
            any_value({{ col }}) as {{ col }},
        {%- endfor %}
        any_value(days_spanned) as days_spanned,
        cast(any_value(start_time) as date) as day,
        {%- for col in summed %}
            sum({{ col }}) as {{ col }},
        {%- endfor %}
        {%- for col in maxed %}
            max({{ col }}) as {{ col }},
        {%- endfor %}
        count(*) as days_materialised
    from {{ ref('int_request_days') }}
    where days_spanned > 1
    group by request_id
{% endmacro %}
