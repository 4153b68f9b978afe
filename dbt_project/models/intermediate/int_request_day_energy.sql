{{ config(pre_hook="{{ delete_partition('day') }}") }}

-- Energy of each request in one day (METHODOLOGY section 3):
--   idle share    = sum_w idle_w x o_i,w / RS_w                      (per pool and component)
--   dynamic share = sum_w dyn_w  x phi_i,w, phi = o_i,w / RS_w, or token-weighted (var dynamic_share = tokens)
--   unallocated   = energy of the day's pool-windows that no request touched (idle capacity, and any
--                   dynamic energy nobody can be charged with), spread over the cluster's requests of the day
--                   in proportion to their request-seconds, kept in its own column.
-- A request with zero duration has no request-seconds and gets no energy (it is still listed).

with requests as (
    select * from {{ ref('stg_raw__requests') }}
    where partition_day = {{ partition_day() }}
),

request_overlaps as (
    select * from {{ ref('int_request_window_overlaps') }}
    where day = {{ partition_day() }}
),

pools as (
    select * from {{ ref('int_pool_window_energy') }}
    where day = {{ partition_day() }}
),

request_pools as (
    select request_id, cluster, window_index, 'gpu' as component, gpu_pool as pool, overlap_s, tokens_per_s
    from request_overlaps
    union all
    select request_id, cluster, window_index, 'host' as component, host_pool as pool, overlap_s, tokens_per_s
    from request_overlaps
),

pool_load as (
    select
        cluster, component, pool, window_index,
        sum(overlap_s) as request_seconds,
        sum(overlap_s * tokens_per_s) as token_seconds
    from request_pools
    group by cluster, component, pool, window_index
),

shares as (
    select
        rp.request_id,
        rp.cluster,
        p.idle_energy_j * rp.overlap_s / l.request_seconds as idle_energy_j,
        p.dynamic_energy_j
        * {% if var('dynamic_share') == 'tokens' -%}
            case
                when l.token_seconds > 0 then rp.overlap_s * rp.tokens_per_s / l.token_seconds
                else rp.overlap_s / l.request_seconds
            end
        {%- else -%}
            rp.overlap_s / l.request_seconds
        {%- endif %} as dynamic_energy_j
    from request_pools as rp
    inner join pool_load as l using (cluster, component, pool, window_index)
    inner join pools as p using (cluster, component, pool, window_index)
),

unallocated as (
    select p.cluster, sum(p.energy_j) as energy_j
    from pools as p
    anti join pool_load as l using (cluster, component, pool, window_index)
    group by p.cluster
),

request_seconds as (
    select request_id, cluster, sum(overlap_s) as request_seconds
    from request_overlaps
    group by request_id, cluster
),

cluster_seconds as (
    select cluster, sum(request_seconds) as request_seconds
    from request_seconds
    group by cluster
),

energy as (
    select request_id, sum(idle_energy_j) as idle_energy_j, sum(dynamic_energy_j) as dynamic_energy_j
    from shares
    group by request_id
),

final as (
    select
        {{ partition_day() }} as day,
        r.request_id,
        r.cluster,
        coalesce(rs.request_seconds, 0) as request_seconds,
        coalesce(e.idle_energy_j, 0) as idle_energy_j,
        coalesce(e.dynamic_energy_j, 0) as dynamic_energy_j,
        coalesce(u.energy_j * rs.request_seconds / nullif(cs.request_seconds, 0), 0) as unallocated_idle_energy_j
    from requests as r
    left join request_seconds as rs on r.request_id = rs.request_id
    left join energy as e on r.request_id = e.request_id
    left join cluster_seconds as cs on r.cluster = cs.cluster
    left join unallocated as u on r.cluster = u.cluster
)

select
    *,
    idle_energy_j + dynamic_energy_j + unallocated_idle_energy_j as it_energy_j
from final
