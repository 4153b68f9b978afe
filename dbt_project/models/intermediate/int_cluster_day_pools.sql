-- The day's attribution pools: per component (gpu, host) a GPU, a node or the whole cluster, as the cluster's
-- attribution level says, for every pool that has telemetry. pool_index numbers them densely over the day, so a
-- pool-window is one integer key, pool_index x 86400 + window_index (macro pool_window_key), that telemetry and
-- requests join on without comparing strings.
-- Fallback pools (is_fallback) are where a request goes whose own GPU or node sent no telemetry that day
-- (docs/telemetry-faults.md): its node's GPUs together ('<node>/*', at GPU level) and the whole cluster ('*', at GPU
-- and node level). A fallback pool has no energy of its own: its members are the pools whose node_pool_index or
-- cluster_pool_index is its index; a request in it counts in each of its k members for 1/k of its time
-- (int_pool_window_load) and draws the sum of their rates over k (int_request_days), so energy is conserved.

with params as (
    select * from {{ ref('int_cluster_day_params') }}
    where day = {{ partition_day() }}
),

intervals as (
    select * from {{ ref('int_telemetry_intervals') }}
    where day = {{ partition_day() }}
),

hardware as (
    select distinct cluster, component, node, gpu from intervals
),

pools as (
    -- a GPU series makes a GPU pool; a node is present (and has a host pool) while any of its series reports
    select distinct
        h.cluster, 'gpu' as component, {{ gpu_pool('p.attribution_level', 'h.node', 'h.gpu') }} as pool,
        p.attribution_level as pool_level, false as is_fallback,
        case when p.attribution_level = 'gpu' then h.node end as node
    from hardware as h
    inner join params as p on h.cluster = p.cluster
    where h.component = 'gpu'
    union
    select distinct
        h.cluster, 'host' as component, {{ host_pool('p.attribution_level', 'h.node') }} as pool,
        case when p.attribution_level = 'cluster' then 'cluster' else 'node' end as pool_level,
        false as is_fallback, cast(null as {{ type_string() }}) as node
    from hardware as h
    inner join params as p on h.cluster = p.cluster
),

fallback_pools as (
    -- a node's GPUs together (GPU level), and the whole cluster (GPU and node level), per component
    select distinct
        p.cluster, 'gpu' as component, p.node || '/*' as pool, 'node' as pool_level, true as is_fallback, p.node
    from pools as p
    where p.component = 'gpu' and p.pool_level = 'gpu'
    union
    select distinct
        p.cluster, p.component, '*' as pool, 'cluster' as pool_level, true as is_fallback,
        cast(null as {{ type_string() }}) as node
    from pools as p
    where p.pool_level in ('gpu', 'node')
),

indexed as (
    select
        *,
        cast(row_number() over (order by cluster, component, is_fallback, pool) - 1 as bigint) as pool_index
    from (
        select * from pools
        union all
        select * from fallback_pools
    ) as all_pools
),

final as (
    select
        {{ partition_day() }} as day,
        i.cluster,
        i.component,
        i.pool,
        i.pool_index,
        i.pool_level,
        i.is_fallback,
        n.pool_index as node_pool_index,
        c.pool_index as cluster_pool_index
    from indexed as i
    left join indexed as n
        on
            not i.is_fallback and n.is_fallback and i.cluster = n.cluster and i.component = n.component
            and n.pool = i.node || '/*'
    left join indexed as c
        on
            not i.is_fallback and c.is_fallback and i.cluster = c.cluster and i.component = c.component
            and c.pool = '*'
)

select * from final
