{{ config(materialized='view') }}

-- Energy attributed to each request (METHODOLOGY section 3), summed over every day it ran in; `day` is the UTC
-- day it started. A view over intermediate.int_request_days joined to the request (raw.requests, through its
-- staging view): a request inside one day is its one row there; one that ran past midnight adds up its days
-- (complete once both days have been materialised, in any order).

{%- set attributes = [
    'cluster', 'model', 'start_time', 'duration_s', 'input_tokens', 'output_tokens', 'tenant', 'endpoint', 'node',
    'gpu'] %}
{%- set summed = [
    'idle_energy_j', 'dynamic_energy_j', 'unallocated_idle_energy_j', 'it_energy_j', 'request_seconds',
    'concurrency_seconds'] %}

-- (int_request_days and the request it joins are named in each branch below, not in an import CTE: a CTE read
-- twice is materialised whole, and a query on the view that needs two columns would then read all of them)
with requests as (
    select
        r.request_id,
        {%- for col in attributes %}
            r.{{ col }},
        {%- endfor %}
        d.days_spanned,
        d.day,
        {%- for col in summed %}
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
        count(*) as days_materialised
    from {{ ref('int_request_days') }} as d
    inner join {{ ref('stg_raw__requests') }} as r on d.day = r.partition_day and d.request_key = r.request_key
    where d.days_spanned > 1
    group by r.request_id
),

final as (
    select
        request_id,
        cluster,
        model,
        start_time,
        duration_s,
        input_tokens,
        output_tokens,
        idle_energy_j,
        dynamic_energy_j,
        unallocated_idle_energy_j,
        it_energy_j,
        day,
        request_seconds,
        tenant,
        endpoint,
        node,
        gpu,
        days_spanned,
        concurrency_seconds / nullif(request_seconds, 0) as mean_concurrency,
        days_materialised
    from requests
)

select * from final
