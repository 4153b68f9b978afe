-- Each node and GPU the day's requests name (one row per cluster, node, gpu as logged), with the GPU pool and host
-- pool its requests draw from (METHODOLOGY section 3) and the level they are attributed at.
--   The request's node is normalised at ingestion like telemetry's (lib/identity.py); its GPU is the GPU's one
--   name: a request may name it by index, UUID or PCI bus id, whichever the GPU's series carry.
--   A request whose GPU (or node) sent no telemetry that day is attributed at the next level up: its node's GPUs
--   together, else the whole cluster (fallback pools, int_cluster_day_pools), and attribution_level says so; the
--   run summary names them (docs/telemetry-faults.md). 'none': the cluster sent no telemetry that day.

with params as (
    select * from {{ ref('int_cluster_day_params') }}
    where day = {{ partition_day() }}
),

requests as (
    select * from {{ ref('stg_raw__requests') }}
    where partition_day = {{ partition_day() }}
),

pools as (
    select * from {{ ref('int_cluster_day_pools') }}
    where day = {{ partition_day() }}
),

series as (
    select * from {{ ref('stg_raw__telemetry_series') }}
),

named as (
    select cluster, node, gpu, count(*) as requests
    from requests
    group by cluster, node, gpu
),

gpu_names as (
    -- every name a GPU's series carry, and the GPU's one name
    select cluster, node, name, any_value(gpu) as gpu
    from (
        select cluster, node, gpu, {{ explode_list(list_of(['gpu', 'gpu_label', 'gpu_uuid', 'pci_bus_id'])) }} as name
        from series
        where gpu is not null
    ) as n
    where name is not null
    group by cluster, node, name
),

resolved as (
    select
        n.cluster,
        n.node,
        n.gpu,
        n.requests,
        p.attribution_level as cluster_level,
        coalesce(g.gpu, n.gpu) as telemetry_gpu
    from named as n
    inner join params as p on n.cluster = p.cluster
    left join gpu_names as g on n.cluster = g.cluster and n.node = g.node and n.gpu = g.name
),

matched as (
    select
        r.*,
        {{ gpu_pool('r.cluster_level', 'r.node', 'r.telemetry_gpu') }} as own_gpu_pool,
        {{ host_pool('r.cluster_level', 'r.node') }} as own_host_pool,
        own_gpu.pool_index as own_gpu_pool_index,
        node_gpus.pool_index as node_gpus_pool_index,
        cluster_gpus.pool_index as cluster_gpus_pool_index,
        own_host.pool_index as own_host_pool_index,
        cluster_hosts.pool_index as cluster_hosts_pool_index
    from resolved as r
    left join pools as own_gpu
        on
            r.cluster = own_gpu.cluster and own_gpu.component = 'gpu' and not own_gpu.is_fallback
            and own_gpu.pool = {{ gpu_pool('r.cluster_level', 'r.node', 'r.telemetry_gpu') }}
    left join pools as node_gpus
        on
            r.cluster = node_gpus.cluster and node_gpus.component = 'gpu' and node_gpus.is_fallback
            and node_gpus.pool = r.node || '/*'
    left join pools as cluster_gpus
        on r.cluster = cluster_gpus.cluster and cluster_gpus.component = 'gpu' and cluster_gpus.pool = '*'
    left join pools as own_host
        on
            r.cluster = own_host.cluster and own_host.component = 'host' and not own_host.is_fallback
            and own_host.pool = {{ host_pool('r.cluster_level', 'r.node') }}
    left join pools as cluster_hosts
        on r.cluster = cluster_hosts.cluster and cluster_hosts.component = 'host' and cluster_hosts.pool = '*'
),

final as (
    select
        {{ partition_day() }} as day,
        cluster,
        node,
        gpu,
        telemetry_gpu,
        cast(requests as bigint) as requests,
        coalesce(own_gpu_pool_index, node_gpus_pool_index, cluster_gpus_pool_index) as gpu_pool_index,
        coalesce(own_host_pool_index, cluster_hosts_pool_index) as host_pool_index,
        case
            when own_gpu_pool_index is not null then own_gpu_pool
            when node_gpus_pool_index is not null then node || '/*'
            when cluster_gpus_pool_index is not null then '*'
            else own_gpu_pool
        end as gpu_pool,
        case
            when own_host_pool_index is not null then own_host_pool
            when cluster_hosts_pool_index is not null then '*'
            else own_host_pool
        end as host_pool,
        case
            when own_gpu_pool_index is not null then cluster_level
            when node_gpus_pool_index is not null then 'node'
            when cluster_gpus_pool_index is not null then 'cluster'
            else 'none'
        end as attribution_level,
        cluster_level
    from matched
)

select * from final
