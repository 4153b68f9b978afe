{#-
    One row per request from intermediate.int_request_days (one row per request and UTC day it ran in) joined to
    the request itself in raw.requests on (day = partition_day, request_key): its id, the request's `attributes`,
    days_spanned, day (the UTC day it started), the `summed` per-day columns added up over the days materialised,
    the `maxed` ones' max, and days_materialised. The two request marts are views over this query.

    A request inside one day is its one row as it is; only those that ran past midnight are grouped. The tables
    are named in each branch, not in an import CTE: a CTE read twice is materialised whole, and a query on the view
    that needs two columns would then read all of them.
-#}
{% macro request_days_by_request(attributes, summed, maxed=[]) %}
    select
        r.request_id,
        {%- for col in attributes %}
            r.{{ col }},
        {%- endfor %}
        d.days_spanned,
        d.day,
        {%- for col in summed + maxed %}
            d.{{ col }},
        {%- endfor %}
        cast(1 as bigint) as days_materialised
    from {{ ref('int_request_days') }} as d
    inner join {{ ref('stg_raw__requests') }} as r on d.day = r.partition_day and d.request_key = r.request_key
    where d.days_spanned = 1
    union all
    select
        r.request_id,
        {%- for col in attributes %}
            any_value(r.{{ col }}) as {{ col }},
        {%- endfor %}
        any_value(d.days_spanned) as days_spanned,
        cast(any_value(r.start_time) as date) as day,
        {%- for col in summed %}
            sum(d.{{ col }}) as {{ col }},
        {%- endfor %}
        {%- for col in maxed %}
            max(d.{{ col }}) as {{ col }},
        {%- endfor %}
        count(*) as days_materialised
    from {{ ref('int_request_days') }} as d
    inner join {{ ref('stg_raw__requests') }} as r on d.day = r.partition_day and d.request_key = r.request_key
    where d.days_spanned > 1
    group by r.request_id
{% endmacro %}
