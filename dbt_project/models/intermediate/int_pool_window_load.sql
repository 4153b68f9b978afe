-- The load of every pool-window that requests ran in (METHODOLOGY section 3): request-seconds RS (the sum of the
-- overlaps o_i,w of the pool's requests), token-seconds (for the token-weighted dynamic share) and how many
-- requests ran in it. Pool-windows with telemetry but no row here are unallocated (their energy is spread over
-- the day's requests). Requests on a pool without telemetry that day are kept too (pool_window_key null): their
-- request-seconds count in the windows' load and against telemetry coverage.
-- A request in a fallback pool (its own GPU or node sent no telemetry that day, int_cluster_day_pools) counts in
-- each of the fallback's members for an equal part of its time: a member's RS is its own requests' overlaps plus
-- those parts, so the members' energy is shared exactly once (int_request_days draws the fallback's rate as the sum
-- of its members' rates over their number).

with request_overlaps as (
    select * from {{ ref('int_request_window_overlaps') }}
    where day = {{ partition_day() }}
),

pools as (
    select * from {{ ref('int_cluster_day_pools') }}
    where day = {{ partition_day() }}
),

members as (
    {{ pool_members('pools') }}
),

by_key as (
    -- pools with telemetry: one integer key per pool-window (a fallback pool's load goes to its members)
    select
        component,
        pool_window_key,
        sum(overlap_s) as request_seconds,
        sum(overlap_s * tokens_per_s) as token_seconds,
        count(*) as requests
    from (
        select
            'gpu' as component,
            m.member_index * 86400 + o.gpu_pool_window_key % 86400 as pool_window_key,
            o.overlap_s * m.weight as overlap_s,
            o.tokens_per_s
        from request_overlaps as o
        inner join members as m on {{ int_div('o.gpu_pool_window_key', 86400) }} = m.target_index
        union all
        select
            'host' as component,
            m.member_index * 86400 + o.host_pool_window_key % 86400 as pool_window_key,
            o.overlap_s * m.weight as overlap_s,
            o.tokens_per_s
        from request_overlaps as o
        inner join members as m on {{ int_div('o.host_pool_window_key', 86400) }} = m.target_index
    ) as member_overlaps
    group by component, pool_window_key
),

telemetered as (
    select
        k.pool_window_key,
        p.cluster,
        k.component,
        p.pool,
        k.pool_window_key - p.pool_index * 86400 as window_index,
        k.request_seconds,
        k.token_seconds,
        k.requests
    from by_key as k
    inner join pools as p on p.pool_index = {{ int_div('k.pool_window_key', 86400) }}
),

untelemetered as (
    -- (rare) requests on a cluster that sent no telemetry that day
    select
        cast(null as bigint) as pool_window_key,
        cluster,
        'gpu' as component,
        gpu_pool as pool,
        window_index,
        sum(overlap_s) as request_seconds,
        sum(overlap_s * tokens_per_s) as token_seconds,
        count(*) as requests
    from request_overlaps
    where gpu_pool_window_key is null
    group by cluster, gpu_pool, window_index
    union all
    select
        cast(null as bigint) as pool_window_key,
        cluster,
        'host' as component,
        host_pool as pool,
        window_index,
        sum(overlap_s) as request_seconds,
        sum(overlap_s * tokens_per_s) as token_seconds,
        count(*) as requests
    from request_overlaps
    where host_pool_window_key is null
    group by cluster, host_pool, window_index

),

final as (
    select
        {{ partition_day() }} as day,
        pool_window_key,
        cluster,
        component,
        pool,
        cast(window_index as bigint) as window_index,
        request_seconds,
        token_seconds,
        cast(requests as bigint) as requests
    from (
        select * from telemetered
        union all
        select * from untelemetered
    ) as all_loads
)

select * from final
