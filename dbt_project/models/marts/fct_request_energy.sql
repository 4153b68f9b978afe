{{
    config(
        pre_hook="{{ delete_requests_touched_by_partition() }}",
    )
}}

-- Energy attributed to each request (METHODOLOGY section 3), summed over every day it ran in. `day` is the UTC
-- day it started. Materialising day D refreshes every request that overlaps D, so a request that runs past
-- midnight is complete once both days have been materialised (in any order).

with touched as (
    select distinct request_id from {{ ref('int_request_day_energy') }}
    where day = {{ partition_day() }}
),

energy as (
    select
        e.request_id,
        sum(e.request_seconds) as request_seconds,
        sum(e.concurrency_seconds) / nullif(sum(e.request_seconds), 0) as mean_concurrency,
        sum(e.idle_energy_j) as idle_energy_j,
        sum(e.dynamic_energy_j) as dynamic_energy_j,
        sum(e.unallocated_idle_energy_j) as unallocated_idle_energy_j,
        sum(e.it_energy_j) as it_energy_j,
        count(*) as days
    from {{ ref('int_request_day_energy') }} as e
    semi join touched as t on e.request_id = t.request_id
    -- a request is at most a day long (ingestion's limit is 6 h), so it has rows on the neighbouring days only:
    -- reading just those keeps each day's cost independent of the warehouse's history
    where e.day between {{ partition_day() }} - 1 and {{ partition_day() }} + 1
    group by e.request_id
),

attributes as (
    select r.*
    from {{ ref('stg_raw__requests') }} as r
    where r.partition_day = {{ partition_day() }}
),

final as (
    select
        a.request_id,
        a.cluster,
        a.model,
        a.start_time,
        a.duration_s,
        a.input_tokens,
        a.output_tokens,
        e.idle_energy_j,
        e.dynamic_energy_j,
        e.unallocated_idle_energy_j,
        e.it_energy_j,
        cast(a.start_time as date) as day,
        e.request_seconds,
        a.tenant,
        a.endpoint,
        a.node,
        a.gpu,
        cast(e.days as integer) as days_spanned,
        e.mean_concurrency
    from attributes as a
    inner join energy as e on a.request_id = e.request_id
)

select * from final
