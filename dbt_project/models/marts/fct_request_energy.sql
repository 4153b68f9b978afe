{{ config(materialized='view') }}

-- Energy attributed to each request (METHODOLOGY section 3), summed over every day it ran in; `day` is the UTC
-- day it started. A view over intermediate.int_request_days: a request inside one day is its one row there; one
-- that ran past midnight adds up its days (complete once both days have been materialised, in any order).

-- (int_request_days is named in each branch below, not in an import CTE: a CTE read twice is materialised
-- whole, and a query on the view that needs two columns would then read all of them)
with requests as (
    select
        request_id, cluster, model, start_time, duration_s, input_tokens, output_tokens, tenant, endpoint, node,
        gpu, days_spanned, day,
        idle_energy_j, dynamic_energy_j, unallocated_idle_energy_j, it_energy_j, request_seconds,
        concurrency_seconds, cast(1 as bigint) as days_materialised
    from {{ ref('int_request_days') }}
    where days_spanned = 1
    union all
    select
        request_id,
        any_value(cluster) as cluster,
        any_value(model) as model,
        any_value(start_time) as start_time,
        any_value(duration_s) as duration_s,
        any_value(input_tokens) as input_tokens,
        any_value(output_tokens) as output_tokens,
        any_value(tenant) as tenant,
        any_value(endpoint) as endpoint,
        any_value(node) as node,
        any_value(gpu) as gpu,
        any_value(days_spanned) as days_spanned,
        cast(any_value(start_time) as date) as day,
        sum(idle_energy_j) as idle_energy_j,
        sum(dynamic_energy_j) as dynamic_energy_j,
        sum(unallocated_idle_energy_j) as unallocated_idle_energy_j,
        sum(it_energy_j) as it_energy_j,
        sum(request_seconds) as request_seconds,
        sum(concurrency_seconds) as concurrency_seconds,
        count(*) as days_materialised
    from {{ ref('int_request_days') }}
    where days_spanned > 1
    group by request_id
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
