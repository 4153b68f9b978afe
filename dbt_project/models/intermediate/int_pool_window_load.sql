-- The load of every pool-window that requests ran in (METHODOLOGY section 3): request-seconds RS (the sum of the
-- overlaps o_i,w of the pool's requests), token-seconds (for the token-weighted dynamic share) and how many
-- requests ran in it. Pool-windows with telemetry but no row here are unallocated (their energy is spread over
-- the day's requests). Requests on a pool without telemetry that day are kept too (pool_window_key null): their
-- request-seconds count in the windows' load and against telemetry coverage.
-- A request in a fallback pool (its own GPU or node sent no telemetry that day, int_cluster_day_pools) counts in
-- each of the fallback's member pools that has energy in the window, for an equal part of its time: a member's RS
-- is its own requests' overlaps plus those parts, so the members' energy is shared exactly once.

with request_overlaps as (
    select * from {{ ref('int_request_window_overlaps') }}
    where day = {{ partition_day() }}
),

pools as (
    select * from {{ ref('int_cluster_day_pools') }}
    where day = {{ partition_day() }}
),

energy as (
    select * from {{ ref('int_pool_window_energy') }}
    where day = {{ partition_day() }}
),

by_key as (
    -- pools with telemetry (and fallback pools): one integer key per pool-window
    select
        'gpu' as component,
        gpu_pool_window_key as pool_window_key,
        sum(overlap_s) as request_seconds,
        sum(overlap_s * tokens_per_s) as token_seconds,
        count(*) as requests
    from request_overlaps
    where gpu_pool_window_key is not null
    group by gpu_pool_window_key
    union all
    select
        'host' as component,
        host_pool_window_key as pool_window_key,
        sum(overlap_s) as request_seconds,
        sum(overlap_s * tokens_per_s) as token_seconds,
        count(*) as requests
    from request_overlaps
    where host_pool_window_key is not null
    group by host_pool_window_key
),

keyed as (
    select
        k.*,
        p.cluster,
        p.pool,
        p.pool_index,
        p.is_fallback,
        k.pool_window_key - p.pool_index * 86400 as window_index
    from by_key as k
    inner join pools as p on p.pool_index = k.pool_window_key // 86400
),

fallback_parts as (
    -- (rare) a fallback pool-window's load, in equal parts over its members with energy in the window
    select
        m.pool_index * 86400 + f.window_index as pool_window_key,
        f.pool_window_key as fallback_key,
        f.cluster,
        f.component,
        m.pool,
        f.window_index,
        f.request_seconds,
        f.token_seconds,
        f.requests,
        count(*) over (partition by f.pool_window_key) as members
    from keyed as f
    inner join pools as m
        on
            f.cluster = m.cluster and f.component = m.component and not m.is_fallback
            and (m.node_pool_index = f.pool_index or m.cluster_pool_index = f.pool_index)
    inner join energy as e on e.pool_window_key = m.pool_index * 86400 + f.window_index
    where f.is_fallback
),

telemetered as (
    select
        pool_window_key,
        any_value(cluster) as cluster,
        any_value(component) as component,
        any_value(pool) as pool,
        any_value(window_index) as window_index,
        sum(request_seconds) as request_seconds,
        sum(token_seconds) as token_seconds,
        sum(requests) as requests
    from (
        select pool_window_key, cluster, component, pool, window_index, request_seconds, token_seconds, requests
        from keyed
        where not is_fallback
        union all
        select
            pool_window_key, cluster, component, pool, window_index, request_seconds / members,
            token_seconds / members, requests
        from fallback_parts
    ) as parts
    group by pool_window_key
),

untelemetered as (
    -- (rare) requests on a GPU or node that sent no telemetry that day, and fallback pool-windows none of whose
    -- members has energy in the window
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
    union all
    select
        cast(null as bigint) as pool_window_key, f.cluster, f.component, f.pool, f.window_index, f.request_seconds,
        f.token_seconds, f.requests
    from keyed as f
    where f.is_fallback and f.pool_window_key not in (select p.fallback_key from fallback_parts as p)
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
