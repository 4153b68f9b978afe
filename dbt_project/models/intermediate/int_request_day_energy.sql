{{ config(pre_hook="{{ delete_partition('day') }}") }}

-- Energy of each request in one day (METHODOLOGY section 3):
--   idle share    = sum_w idle_w x o_i,w / RS_w                      (per pool and component)
--   dynamic share = sum_w dyn_w  x phi_i,w, phi = o_i,w / RS_w, or token-weighted (var dynamic_share = tokens)
--   unallocated   = energy of the day's pool-windows that no request touched (idle capacity, and any
--                   dynamic energy nobody can be charged with), spread over the cluster's requests of the day
--                   in proportion to their request-seconds, kept in its own column.
-- A request with zero duration has no request-seconds and gets no energy (it is still listed).
-- Impact at IT level (METHODOLOGY section 5), shared exactly like energy: carbon = each share x the grid
-- intensity of its window's hour; embodied carbon and water of the hardware present in a pool-window shared like
-- its idle energy (by request-seconds), those of pool-windows no request touched spread like unallocated energy.

with requests as (
    select * from {{ ref('stg_raw__requests') }}
    where partition_day = {{ partition_day() }}
),

request_overlaps as (
    select * from {{ ref('int_request_window_overlaps') }}
    where day = {{ partition_day() }}
),

pool_impact as (
    select * from {{ ref('int_pool_window_impact') }}
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
    -- energy, embodied carbon and embodied water per request-second (and energy per token-second) of each
    -- pool-window that requests ran in, with the window's grid intensity
    select
        p.cluster, p.component, p.pool, p.window_index,
        p.idle_energy_j / l.request_seconds as idle_per_s,
        {% if var('dynamic_share') == 'tokens' -%}
            case when l.token_seconds > 0 then p.dynamic_energy_j / l.token_seconds end as dynamic_per_token_s,
        {%- else -%}
            cast(null as double) as dynamic_per_token_s,
        {%- endif %}
        p.dynamic_energy_j / l.request_seconds as dynamic_per_s,
        p.embodied_g / l.request_seconds as embodied_per_s,
        p.embodied_low_g / l.request_seconds as embodied_low_per_s,
        p.embodied_high_g / l.request_seconds as embodied_high_per_s,
        p.water_l / l.request_seconds as water_per_s,
        p.water_low_l / l.request_seconds as water_low_per_s,
        p.water_high_l / l.request_seconds as water_high_per_s,
        p.ci, p.ci_low, p.ci_high, p.ci_market, p.annual_factor,
        l.request_seconds
    from pool_impact as p
    inner join pool_load as l
        on
            p.cluster = l.cluster and p.component = l.component and p.pool = l.pool
            and p.window_index = l.window_index
),

overlap_shares as (
    -- each overlap draws from its GPU pool and its host pool:
    -- idle o x idle/RS; dynamic o x dyn/RS (or o x tokens/s x dyn/token-seconds); embodied o x embodied/RS
    select
        o.request_id,
        o.cluster,
        o.overlap_s,
        -- concurrency the request saw: requests running in its GPU pool during the window, weighted by its time
        o.overlap_s * coalesce(g.request_seconds, o.overlap_s) / o.window_length_s as concurrency_seconds,
        case when g.pool is not null then o.overlap_s else 0 end as telemetry_covered_s,
        o.overlap_s * coalesce(g.idle_per_s, 0) as gpu_idle_j,
        o.overlap_s * coalesce(o.tokens_per_s * g.dynamic_per_token_s, g.dynamic_per_s, 0) as gpu_dynamic_j,
        o.overlap_s * coalesce(h.idle_per_s, 0) as host_idle_j,
        o.overlap_s * coalesce(o.tokens_per_s * h.dynamic_per_token_s, h.dynamic_per_s, 0) as host_dynamic_j,
        o.overlap_s * (coalesce(g.embodied_per_s, 0) + coalesce(h.embodied_per_s, 0)) as embodied_g,
        o.overlap_s * (coalesce(g.embodied_low_per_s, 0) + coalesce(h.embodied_low_per_s, 0)) as embodied_low_g,
        o.overlap_s * (coalesce(g.embodied_high_per_s, 0) + coalesce(h.embodied_high_per_s, 0)) as embodied_high_g,
        o.overlap_s * (coalesce(g.water_per_s, 0) + coalesce(h.water_per_s, 0)) as water_l,
        o.overlap_s * (coalesce(g.water_low_per_s, 0) + coalesce(h.water_low_per_s, 0)) as water_low_l,
        o.overlap_s * (coalesce(g.water_high_per_s, 0) + coalesce(h.water_high_per_s, 0)) as water_high_l,
        -- one zone and hour per cluster-window: the GPU and host pools share it
        coalesce(g.ci, h.ci) as ci,
        coalesce(g.ci_low, h.ci_low) as ci_low,
        coalesce(g.ci_high, h.ci_high) as ci_high,
        coalesce(g.ci_market, h.ci_market) as ci_market,
        coalesce(g.annual_factor, h.annual_factor) as annual_factor
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

shares as (
    select
        *,
        gpu_idle_j + host_idle_j as idle_energy_j,
        gpu_dynamic_j + host_dynamic_j as dynamic_energy_j,
        gpu_idle_j + gpu_dynamic_j + host_idle_j + host_dynamic_j as energy_j
    from overlap_shares
),

unallocated as (
    -- the pool-windows no request touched: their energy, its carbon, and the embodied carbon and water of the
    -- hardware idling in them
    select
        p.cluster,
        sum(p.energy_j) as energy_j,
        sum(p.energy_j * p.ci) / 3.6e6 as location_g,
        sum(p.energy_j * p.ci_low) / 3.6e6 as location_low_g,
        sum(p.energy_j * p.ci_high) / 3.6e6 as location_high_g,
        sum(p.energy_j * coalesce(p.ci_market, p.ci)) / 3.6e6 as market_g,
        sum(case when p.ci_market is not null then p.energy_j else 0 end) as market_factor_j,
        sum(case when p.annual_factor then p.energy_j else 0 end) as annual_factor_j,
        sum(p.embodied_g) as embodied_g,
        sum(p.embodied_low_g) as embodied_low_g,
        sum(p.embodied_high_g) as embodied_high_g,
        sum(p.water_l) as water_l,
        sum(p.water_low_l) as water_low_l,
        sum(p.water_high_l) as water_high_l
    from pool_impact as p
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
        sum(telemetry_covered_s) as telemetry_covered_s,
        sum(idle_energy_j) as idle_energy_j,
        sum(dynamic_energy_j) as dynamic_energy_j,
        sum(gpu_idle_j + gpu_dynamic_j) as accelerator_energy_j,
        sum(gpu_dynamic_j) as accelerator_dynamic_energy_j,
        sum(host_idle_j + host_dynamic_j) as host_energy_j,
        sum(energy_j * ci) / 3.6e6 as location_g,
        sum(energy_j * ci_low) / 3.6e6 as location_low_g,
        sum(energy_j * ci_high) / 3.6e6 as location_high_g,
        sum(energy_j * coalesce(ci_market, ci)) / 3.6e6 as market_g,
        sum(case when ci_market is not null then energy_j else 0 end) as market_factor_j,
        sum(case when annual_factor then energy_j else 0 end) as annual_factor_j,
        sum(embodied_g) as embodied_g,
        sum(embodied_low_g) as embodied_low_g,
        sum(embodied_high_g) as embodied_high_g,
        sum(water_l) as water_l,
        sum(water_low_l) as water_low_l,
        sum(water_high_l) as water_high_l
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
        coalesce(u.energy_j * e.request_seconds / nullif(cs.request_seconds, 0), 0) as unallocated_idle_energy_j,
        -- impact at IT level (facility = x PUE downstream); the unallocated part's spread like its energy
        {%- for col in [
            'location_g', 'location_low_g', 'location_high_g', 'market_g', 'market_factor_j', 'annual_factor_j',
            'embodied_g', 'embodied_low_g', 'embodied_high_g', 'water_l', 'water_low_l', 'water_high_l'] %}
            coalesce(e.{{ col }}, 0)
            + coalesce(u.{{ col }} * e.request_seconds / nullif(cs.request_seconds, 0), 0) as {{ col }}_raw,
        {%- endfor %}
        coalesce(e.telemetry_covered_s, 0) as telemetry_covered_s,
        coalesce(e.accelerator_energy_j, 0) as accelerator_energy_j,
        coalesce(e.accelerator_dynamic_energy_j, 0) as accelerator_dynamic_energy_j,
        coalesce(e.host_energy_j, 0) as host_energy_j
    from requests as r
    left join energy as e on r.request_id = e.request_id
    left join cluster_seconds as cs on r.cluster = cs.cluster
    left join unallocated as u on r.cluster = u.cluster
)

select
    day,
    request_id,
    cluster,
    request_seconds,
    concurrency_seconds,
    idle_energy_j,
    dynamic_energy_j,
    unallocated_idle_energy_j,
    idle_energy_j + dynamic_energy_j + unallocated_idle_energy_j as it_energy_j,
    telemetry_covered_s,
    accelerator_energy_j,
    accelerator_dynamic_energy_j,
    host_energy_j,
    location_g_raw as it_location_g_co2e,
    location_low_g_raw as it_location_low_g_co2e,
    location_high_g_raw as it_location_high_g_co2e,
    market_g_raw as it_market_g_co2e,
    market_factor_j_raw as market_factor_energy_j,
    annual_factor_j_raw as annual_factor_energy_j,
    embodied_g_raw as embodied_g_co2e,
    embodied_low_g_raw as embodied_low_g_co2e,
    embodied_high_g_raw as embodied_high_g_co2e,
    water_l_raw as water_embodied_l,
    water_low_l_raw as water_embodied_low_l,
    water_high_l_raw as water_embodied_high_l
from final
