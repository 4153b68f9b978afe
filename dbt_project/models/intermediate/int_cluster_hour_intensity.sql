{%- set basis = var('grid_location_basis') -%}
{%- if basis not in ('direct', 'lifecycle') -%}
    {{ exceptions.raise_compiler_error("var grid_location_basis must be direct or lifecycle, not " ~ basis) }}
{%- endif %}

-- Grid carbon intensity of each cluster's zone for each UTC hour of the day (METHODOLOGY section 5): the hourly
-- factor when the zone has one for that hour, else the annual fallback (flagged resolution = 'annual').
-- Location-based = the direct (combustion, GHG Protocol scope 2) intensity, or the lifecycle one with
-- var grid_location_basis = lifecycle. Market-based = the hourly market factor, else the annual one, else null.
-- Range: an hourly value +/- var grid_hourly_rel_uncertainty (grid_estimated_rel_uncertainty when the provider
-- marks the hour estimated); an annual value: the annual row's low-high (the spread of the hours around it).

with clusters as (
    select * from {{ ref('stg_raw__clusters') }}
),

day_factors as (
    select * from {{ ref('int_cluster_day_factors') }}
    where day = {{ partition_day() }}
),

hourly as (
    select * from {{ ref('stg_factors__grid_intensity_hourly') }}
    where
        hour_start >= cast({{ partition_day() }} as timestamp)
        and hour_start < cast({{ partition_day() }} + 1 as timestamp)
),

hours as (
    select
        c.cluster,
        c.region as zone,
        h.range as hour_of_day,
        {{ add_hours('cast(' ~ partition_day() ~ ' as timestamp)', 'h.range') }} as hour_start
    from clusters as c
    cross join {{ day_hours() }} as h
),

final as (
    select
        {{ partition_day() }} as day,
        h.cluster,
        h.zone,
        h.hour_of_day,
        h.hour_start,
        {%- if basis == 'lifecycle' %}
            coalesce(f.lifecycle_g_co2e_per_kwh, d.annual_location_g_co2e_per_kwh) as location_g_co2e_per_kwh,
        {%- else %}
            coalesce(f.location_g_co2e_per_kwh, d.annual_location_g_co2e_per_kwh) as location_g_co2e_per_kwh,
        {%- endif %}
        {%- for end, sign in [('low', '-'), ('high', '+')] %}
            case
                when f.zone is null then d.annual_{{ end }}_g_co2e_per_kwh
                else
                    {%- if basis == 'lifecycle' %} f.lifecycle_g_co2e_per_kwh {% else %} f.location_g_co2e_per_kwh
                    {%- endif %}
                    * (1 {{ sign }} case
                        when f.estimated then {{ var('grid_estimated_rel_uncertainty') }}
                        else {{ var('grid_hourly_rel_uncertainty') }}
                    end)
            end as location_{{ end }}_g_co2e_per_kwh,
        {%- endfor %}
        coalesce(f.market_g_co2e_per_kwh, d.annual_market_g_co2e_per_kwh) as market_g_co2e_per_kwh,
        case when f.zone is not null then 'hourly' else 'annual' end as resolution,
        coalesce(f.estimated, false) as estimated,
        case
            when f.zone is not null
                then 'factors.grid_intensity_hourly ' || f.zone || ' (' || '{{ basis }}' || '): ' || f.source
            else d.annual_grid_source
        end as grid_source,
        case when f.zone is not null then f.version else d.annual_grid_version end as grid_version
    from hours as h
    left join hourly as f on h.zone = f.zone and h.hour_start = f.hour_start
    left join day_factors as d on h.cluster = d.cluster
)

select * from final
