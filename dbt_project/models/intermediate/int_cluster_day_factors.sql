-- One row per cluster and day: every impact factor the day's requests use (METHODOLOGY section 5), with its range
-- and where it came from. A value in clusters.yml wins over the factor tables; its range is the matched factor
-- row's range scaled to it (PUE: the overhead part, pue - 1, is scaled). Rates per second of provisioned hardware:
--   embodied g/s = embodied kg x 1000 / (lifetime years x seconds per year), low = low kg / longest lifetime.
-- Embodied water: clusters.yml water_embodied_l is per node (server with its GPUs) and is carried by the node;
-- otherwise the hardware table's server row is carried by nodes and its GPU row by GPUs.

with clusters as (
    select * from {{ ref('stg_raw__clusters') }}
),

datacenter as (
    select * from {{ ref('stg_factors__datacenter') }}
),

hardware as (
    select * from {{ ref('stg_factors__hardware') }}
),

water as (
    select * from {{ ref('stg_factors__water_intensity') }}
),

annual as (
    select * from {{ ref('stg_factors__grid_intensity_annual') }}
),

provider_rows as (
    {% call first_row_per('c.cluster', "(d.provider = 'default')") %}
    select
        c.cluster,
        d.*
    from clusters as c
    inner join datacenter as d on d.provider in (coalesce(c.provider, 'default'), 'default')
    {% endcall %}
),

hardware_rows as (
    -- the longest GPU-model prefix that matches, else the component's 'default' row
    {% call first_row_per('c.cluster, h.component', "(lower(h.hardware) = 'default'), length(h.hardware) desc") %}
    select
        c.cluster,
        h.*
    from clusters as c
    inner join hardware as h
        on {{ starts_with('lower(c.gpu_model)', 'lower(h.hardware)') }} or lower(h.hardware) = 'default'
    {% endcall %}
),

water_rows as (
    {% call first_row_per('c.cluster', zone_match_rank('w.zone', 'c.region')) %}
    select
        c.cluster,
        w.*
    from clusters as c
    inner join water as w on {{ zone_match_rank('w.zone', 'c.region') }} is not null
    {% endcall %}
),

annual_rows as (
    -- the zone (or its country, or WORLD), then the factor's year nearest the day's (a year-less row last)
    {% set year_distance = 'abs(coalesce(a.year, 9999) - year(' ~ partition_day() ~ '))' %}
    {% call first_row_per('c.cluster', zone_match_rank('a.zone', 'c.region') ~ ', ' ~ year_distance) %}
    select
        c.cluster,
        a.*
    from clusters as c
    inner join annual as a on {{ zone_match_rank('a.zone', 'c.region') }} is not null
    {% endcall %}
),

chosen as (
    select
        c.cluster,
        c.region as zone,
        c.gpus_per_node,
        -- PUE and on-site WUE
        coalesce(c.pue, d.pue) as pue,
        case
            when c.pue is null then d.pue_low
            when d.pue > 1 then 1 + (c.pue - 1) * (d.pue_low - 1) / (d.pue - 1)
            else c.pue
        end as pue_low,
        case
            when c.pue is null then d.pue_high
            when d.pue > 1 then 1 + (c.pue - 1) * (d.pue_high - 1) / (d.pue - 1)
            else c.pue
        end as pue_high,
        case when c.pue is null then 'factors.datacenter ' || d.provider || ': ' || d.source else 'clusters.yml' end
            as pue_source,
        coalesce(c.wue_onsite_l_per_kwh, d.wue_onsite_l_per_kwh) as wue_onsite_l_per_kwh,
        coalesce(c.wue_onsite_l_per_kwh * d.wue_low_l_per_kwh / nullif(d.wue_onsite_l_per_kwh, 0), d.wue_low_l_per_kwh)
            as wue_low_l_per_kwh,
        coalesce(
            c.wue_onsite_l_per_kwh * d.wue_high_l_per_kwh / nullif(d.wue_onsite_l_per_kwh, 0), d.wue_high_l_per_kwh
        ) as wue_high_l_per_kwh,
        case
            when c.wue_onsite_l_per_kwh is null then 'factors.datacenter ' || d.provider || ': ' || d.source
            else 'clusters.yml'
        end as wue_source,
        d.version as datacenter_version,
        -- embodied carbon
        coalesce(c.gpu_embodied_kg_co2e, g.embodied_kg_co2e) as gpu_embodied_kg_co2e,
        coalesce(c.gpu_embodied_kg_co2e, g.embodied_kg_co2e) * g.embodied_low_kg_co2e / nullif(g.embodied_kg_co2e, 0)
            as gpu_embodied_low_kg_co2e,
        coalesce(c.gpu_embodied_kg_co2e, g.embodied_kg_co2e) * g.embodied_high_kg_co2e / nullif(g.embodied_kg_co2e, 0)
            as gpu_embodied_high_kg_co2e,
        coalesce(c.server_embodied_kg_co2e, s.embodied_kg_co2e) as server_embodied_kg_co2e,
        coalesce(c.server_embodied_kg_co2e, s.embodied_kg_co2e) * s.embodied_low_kg_co2e
        / nullif(s.embodied_kg_co2e, 0) as server_embodied_low_kg_co2e,
        coalesce(c.server_embodied_kg_co2e, s.embodied_kg_co2e) * s.embodied_high_kg_co2e
        / nullif(s.embodied_kg_co2e, 0) as server_embodied_high_kg_co2e,
        coalesce(c.lifetime_years, s.lifetime_years) as lifetime_years,
        coalesce(c.lifetime_years, s.lifetime_years) * s.lifetime_low_years / nullif(s.lifetime_years, 0)
            as lifetime_low_years,
        coalesce(c.lifetime_years, s.lifetime_years) * s.lifetime_high_years / nullif(s.lifetime_years, 0)
            as lifetime_high_years,
        concat_ws(
            '; ',
            'gpu: ' || case
                when c.gpu_embodied_kg_co2e is null then g.hardware || ' (' || g.source || ')'
                else 'clusters.yml'
            end,
            'server: ' || case
                when c.server_embodied_kg_co2e is null then s.hardware || ' (' || s.source || ')'
                else 'clusters.yml'
            end,
            'lifetime: ' || case when c.lifetime_years is null then s.source else 'clusters.yml' end
        ) as embodied_source,
        concat_ws('; ', 'gpu ' || g.version, 'server ' || s.version) as hardware_version,
        -- embodied water: per node from clusters.yml, else server row (node) + GPU row (GPU)
        case when c.water_embodied_l is not null then 0 else coalesce(g.embodied_water_l, 0) end as gpu_water_l,
        case when c.water_embodied_l is not null then 0 else coalesce(g.embodied_water_low_l, 0) end
            as gpu_water_low_l,
        case when c.water_embodied_l is not null then 0 else coalesce(g.embodied_water_high_l, 0) end
            as gpu_water_high_l,
        coalesce(c.water_embodied_l, s.embodied_water_l, 0) as node_water_l,
        coalesce(c.water_embodied_l, s.embodied_water_low_l, 0) as node_water_low_l,
        coalesce(c.water_embodied_l, s.embodied_water_high_l, 0) as node_water_high_l,
        case
            when c.water_embodied_l is not null then 'clusters.yml (per node)'
            when s.embodied_water_l is null and g.embodied_water_l is null then 'none: no embodied water factor'
            else 'factors.hardware: ' || coalesce(s.source, '') || ' / ' || coalesce(g.source, '')
        end as embodied_water_source,
        -- off-site water and the annual grid fallback
        w.ewif_l_per_kwh,
        w.ewif_low_l_per_kwh,
        w.ewif_high_l_per_kwh,
        'factors.water_intensity ' || w.zone || ': ' || w.source as water_source,
        w.version as water_version,
        -- (sqlfluff mis-tracks the indent of this branch after the call blocks above)
        -- noqa: disable=LT02
        {%- if var('grid_location_basis') == 'lifecycle' %}
            coalesce(a.lifecycle_g_co2e_per_kwh, a.location_g_co2e_per_kwh) as annual_location_g_co2e_per_kwh,
        {%- else %}
            a.location_g_co2e_per_kwh as annual_location_g_co2e_per_kwh,
        {%- endif %}
        -- noqa: enable=LT02
        a.market_g_co2e_per_kwh as annual_market_g_co2e_per_kwh,
        a.low_g_co2e_per_kwh as annual_low_g_co2e_per_kwh,
        a.high_g_co2e_per_kwh as annual_high_g_co2e_per_kwh,
        'factors.grid_intensity_annual ' || a.zone || coalesce(' ' || a.year, '') || ' (' || a.basis || ' basis): '
        || a.source as annual_grid_source,
        a.version as annual_grid_version
    from clusters as c
    left join provider_rows as d on c.cluster = d.cluster
    left join hardware_rows as g on c.cluster = g.cluster and g.component = 'gpu'
    left join hardware_rows as s on c.cluster = s.cluster and s.component = 'server'
    left join water_rows as w on c.cluster = w.cluster
    left join annual_rows as a on c.cluster = a.cluster
),

final as (
    select
        {{ partition_day() }} as day,
        *,
        gpu_embodied_kg_co2e * 1000 / (lifetime_years * {{ seconds_per_year() }}) as gpu_embodied_g_per_s,
        gpu_embodied_low_kg_co2e * 1000 / (lifetime_high_years * {{ seconds_per_year() }})
            as gpu_embodied_low_g_per_s,
        gpu_embodied_high_kg_co2e * 1000 / (lifetime_low_years * {{ seconds_per_year() }})
            as gpu_embodied_high_g_per_s,
        server_embodied_kg_co2e * 1000 / (lifetime_years * {{ seconds_per_year() }}) as server_embodied_g_per_s,
        server_embodied_low_kg_co2e * 1000 / (lifetime_high_years * {{ seconds_per_year() }})
            as server_embodied_low_g_per_s,
        server_embodied_high_kg_co2e * 1000 / (lifetime_low_years * {{ seconds_per_year() }})
            as server_embodied_high_g_per_s,
        gpu_water_l / (lifetime_years * {{ seconds_per_year() }}) as gpu_water_l_per_s,
        gpu_water_low_l / (lifetime_high_years * {{ seconds_per_year() }}) as gpu_water_low_l_per_s,
        gpu_water_high_l / (lifetime_low_years * {{ seconds_per_year() }}) as gpu_water_high_l_per_s,
        node_water_l / (lifetime_years * {{ seconds_per_year() }}) as node_water_l_per_s,
        node_water_low_l / (lifetime_high_years * {{ seconds_per_year() }}) as node_water_low_l_per_s,
        node_water_high_l / (lifetime_low_years * {{ seconds_per_year() }}) as node_water_high_l_per_s
    from chosen
)

select * from final
