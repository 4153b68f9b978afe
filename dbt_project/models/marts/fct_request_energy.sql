{{ config(materialized='view') }}

-- Energy attributed to each request (METHODOLOGY section 3), summed over every day it ran in; `day` is the UTC
-- day it started. A view over intermediate.int_request_days joined to the request (raw.requests, through its
-- staging view): a request inside one day is its one row there; one that ran past midnight adds up its days
-- (complete once both days have been materialised, in any order).

-- (int_request_days and the request it joins are named in each branch below, not in an import CTE: a CTE read
-- twice is materialised whole, and a query on the view that needs two columns would then read all of them)
with requests as (
    select
        r.request_id, r.cluster, r.model, r.start_time, r.duration_s, r.input_tokens, r.output_tokens, r.tenant,
        r.endpoint, r.node, r.gpu, d.days_spanned, d.day,
        d.idle_energy_j, d.dynamic_energy_j, d.unallocated_idle_energy_j, d.it_energy_j, d.request_seconds,
        d.concurrency_seconds, cast(1 as bigint) as days_materialised
    from {{ ref('int_request_days') }} as d
    inner join {{ ref('stg_raw__requests') }} as r on d.day = r.partition_day and d.request_key = r.request_key
    where d.days_spanned = 1
    union all
    select
        r.request_id,
        any_value(r.cluster) as cluster,
        any_value(r.model) as model,
        any_value(r.start_time) as start_time,
        any_value(r.duration_s) as duration_s,
        any_value(r.input_tokens) as input_tokens,
        any_value(r.output_tokens) as output_tokens,
        any_value(r.tenant) as tenant,
        any_value(r.endpoint) as endpoint,
        any_value(r.node) as node,
        any_value(r.gpu) as gpu,
        any_value(d.days_spanned) as days_spanned,
        cast(any_value(r.start_time) as date) as day,
        sum(d.idle_energy_j) as idle_energy_j,
        sum(d.dynamic_energy_j) as dynamic_energy_j,
        sum(d.unallocated_idle_energy_j) as unallocated_idle_energy_j,
        sum(d.it_energy_j) as it_energy_j,
        sum(d.request_seconds) as request_seconds,
        sum(d.concurrency_seconds) as concurrency_seconds,
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
