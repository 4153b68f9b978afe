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

pool_load as (
    select
        cluster, 'gpu' as component, gpu_pool as pool, window_index,
        sum(overlap_s) as request_seconds, sum(overlap_s * tokens_per_s) as token_seconds
    from request_overlaps
    group by cluster, gpu_pool, window_index
    union all
    select
        cluster, 'host' as component, host_pool as pool, window_index,
        sum(overlap_s) as request_seconds, sum(overlap_s * tokens_per_s) as token_seconds
    from request_overlaps
    group by cluster, host_pool, window_index
),

pool_rates as (
    -- energy per request-second (and per token-second) of each pool-window that requests ran in
    select
        p.cluster, p.component, p.pool, p.window_index,
        p.idle_energy_j / l.request_seconds as idle_per_s,
        {% if var('dynamic_share') == 'tokens' -%}
            case when l.token_seconds > 0 then p.dynamic_energy_j / l.token_seconds end as dynamic_per_token_s,
        {%- else -%}
            cast(null as double) as dynamic_per_token_s,
        {%- endif %}
        p.dynamic_energy_j / l.request_seconds as dynamic_per_s,
        l.request_seconds
    from pools as p
    inner join pool_load as l
        on
            p.cluster = l.cluster and p.component = l.component and p.pool = l.pool
            and p.window_index = l.window_index
),

shares as (
    -- each overlap draws from its GPU pool and its host pool:
    -- idle o x idle/RS; dynamic o x dyn/RS (or o x tokens/s x dyn/token-seconds)
    select
        o.request_id,
        o.cluster,
        o.overlap_s,
        -- concurrency the request saw: requests running in its GPU pool during the window, weighted by its time
        o.overlap_s * coalesce(g.request_seconds, o.overlap_s) / o.window_length_s as concurrency_seconds,
        o.overlap_s * (coalesce(g.idle_per_s, 0) + coalesce(h.idle_per_s, 0)) as idle_energy_j,
        o.overlap_s * (
            coalesce(o.tokens_per_s * g.dynamic_per_token_s, g.dynamic_per_s, 0)
            + coalesce(o.tokens_per_s * h.dynamic_per_token_s, h.dynamic_per_s, 0)
        ) as dynamic_energy_j
    from request_overlaps as o
    left join pool_rates as g
        on
            g.component = 'gpu' and o.cluster = g.cluster and o.gpu_pool = g.pool
            and o.window_index = g.window_index
    left join pool_rates as h
        on
            h.component = 'host' and o.cluster = h.cluster and o.host_pool = h.pool
            and o.window_index = h.window_index
),

unallocated as (
    select p.cluster, sum(p.energy_j) as energy_j
    from pools as p
    anti join pool_load as l
        on
            p.cluster = l.cluster and p.component = l.component and p.pool = l.pool
            and p.window_index = l.window_index
    group by p.cluster
),

energy as (
    select
        request_id,
        cluster,
        sum(overlap_s) as request_seconds,
        sum(concurrency_seconds) as concurrency_seconds,
        sum(idle_energy_j) as idle_energy_j,
        sum(dynamic_energy_j) as dynamic_energy_j
    from shares
    group by request_id, cluster
),

cluster_seconds as (
    select cluster, sum(request_seconds) as request_seconds
    from energy
    group by cluster
),

final as (
    select
        {{ partition_day() }} as day,
        r.request_id,
        r.cluster,
        coalesce(e.request_seconds, 0) as request_seconds,
        coalesce(e.concurrency_seconds, 0) as concurrency_seconds,
        coalesce(e.idle_energy_j, 0) as idle_energy_j,
        coalesce(e.dynamic_energy_j, 0) as dynamic_energy_j,
        coalesce(u.energy_j * e.request_seconds / nullif(cs.request_seconds, 0), 0) as unallocated_idle_energy_j
    from requests as r
    left join energy as e on r.request_id = e.request_id
    left join cluster_seconds as cs on r.cluster = cs.cluster
    left join unallocated as u on r.cluster = u.cluster
)

select
    *,
    idle_energy_j + dynamic_energy_j + unallocated_idle_energy_j as it_energy_j
from final
