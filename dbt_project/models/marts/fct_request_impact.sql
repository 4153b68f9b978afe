{{
    config(
        pre_hook="{{ delete_requests_touched_by_partition() }}",
    )
}}

{%- set fits = energy_model_fits_relation() %}

-- Impact of each request (METHODOLOGY section 5, CONTRACT section 3), summed over every day it ran in; `day` is
-- the UTC day it started (same refresh rule as fct_request_energy).
--   facility energy   = PUE x IT energy (PUE applied once, per day)
--   operational       = PUE x sum over windows of IT energy share x grid intensity of the window's hour (g/kWh)
--                       location-based; market-based likewise where a market factor exists (else null)
--   embodied          = the hardware's embodied carbon per provisioned second, shared like idle energy
--   water             = on-site WUE x IT energy + EWIF(zone) x facility energy + embodied water (shared like
--                       embodied carbon) + training and fine-tuning water
--   training          = the model's monthly rate per inference (marts.dim_model_training_rates) x (output
--                       tokens + 1); fine-tuning likewise; kept apart from the consumer (SCI for AI) score
--   totals            total_g_co2e = operational (location) + embodied + training + fine-tuning;
--                     consumer_sci_g_co2e = operational (location) + embodied; total_water_l = the four waters
-- A request (or the part of it) that ran where no telemetry covers it gets the IT energy predicted by the latest
-- energy model for its model and hardware (models.energy_model_fits, paper form; telemetry fit preferred), with
-- statsmodels' 95 % prediction interval, at the grid intensity of the hour it started.
-- Bounds (low/high): factor ranges (PUE, grid intensity, on-site WUE, EWIF, embodied carbon and water, hardware
-- lifetime) and the prediction interval, taken all at their low (high) end together: an interval, not a
-- confidence level; every factor enters with a positive sign, so the ends are the extreme combinations.

with touched as (
    select distinct request_id from {{ ref('int_request_day_energy') }}
    where day = {{ partition_day() }}
),

factors as (
    select * from {{ ref('int_cluster_day_factors') }}
    where day between {{ partition_day() }} - 1 and {{ partition_day() }} + 1
),

measured as (
    select
        e.request_id,
        sum(e.request_seconds) as request_seconds,
        sum(e.telemetry_covered_s) as telemetry_covered_s,
        sum(e.idle_energy_j) as idle_energy_j,
        sum(e.dynamic_energy_j) as dynamic_energy_j,
        sum(e.unallocated_idle_energy_j) as unallocated_idle_energy_j,
        sum(e.it_energy_j) as it_energy_j,
        sum(e.accelerator_energy_j) as accelerator_energy_j,
        sum(e.accelerator_dynamic_energy_j) as accelerator_dynamic_energy_j,
        sum(e.host_energy_j) as host_energy_j,
        sum(f.pue * e.it_energy_j) as facility_energy_j,
        sum(f.pue * e.it_location_g_co2e) as location_g,
        sum(f.pue_low * e.it_location_low_g_co2e) as location_low_g,
        sum(f.pue_high * e.it_location_high_g_co2e) as location_high_g,
        sum(f.pue * e.it_market_g_co2e) as market_g,
        sum(e.market_factor_energy_j) as market_factor_energy_j,
        sum(e.annual_factor_energy_j) as annual_factor_energy_j,
        sum(e.embodied_g_co2e) as embodied_g,
        sum(e.embodied_low_g_co2e) as embodied_low_g,
        sum(e.embodied_high_g_co2e) as embodied_high_g,
        sum(e.water_embodied_l) as water_embodied_l,
        sum(e.water_embodied_low_l) as water_embodied_low_l,
        sum(e.water_embodied_high_l) as water_embodied_high_l,
        sum(f.wue_onsite_l_per_kwh * e.it_energy_j) / 3.6e6 as water_onsite_l,
        sum(f.wue_low_l_per_kwh * e.it_energy_j) / 3.6e6 as water_onsite_low_l,
        sum(f.wue_high_l_per_kwh * e.it_energy_j) / 3.6e6 as water_onsite_high_l,
        sum(f.ewif_l_per_kwh * f.pue * e.it_energy_j) / 3.6e6 as water_offsite_l,
        sum(f.ewif_low_l_per_kwh * f.pue_low * e.it_energy_j) / 3.6e6 as water_offsite_low_l,
        sum(f.ewif_high_l_per_kwh * f.pue_high * e.it_energy_j) / 3.6e6 as water_offsite_high_l,
        count(*) as days
    from {{ ref('int_request_day_energy') }} as e
    semi join touched as t on e.request_id = t.request_id
    inner join factors as f on e.cluster = f.cluster and e.day = f.day
    where e.day between {{ partition_day() }} - 1 and {{ partition_day() }} + 1
    group by e.request_id
),

requests as (
    select
        r.*,
        c.gpu_model as hardware,
        cast(r.start_time as date) as start_day,
        cast(floor(epoch(r.start_time) / 3600) as bigint) as start_hour
    from {{ ref('stg_raw__requests') }} as r
    inner join {{ ref('stg_raw__clusters') }} as c on r.cluster = c.cluster
    where r.partition_day = {{ partition_day() }}
),

start_hour as (
    -- grid intensity of the hour a request started (for its predicted part): that day's hours, else this day's
    -- annual fallback
    select
        cluster,
        cast(floor(epoch(hour_start) / 3600) as bigint) as start_hour,
        location_g_co2e_per_kwh,
        location_low_g_co2e_per_kwh,
        location_high_g_co2e_per_kwh,
        market_g_co2e_per_kwh,
        resolution,
        grid_source,
        grid_version
    from {{ ref('int_cluster_hour_intensity') }}
    where day between {{ partition_day() }} - 1 and {{ partition_day() }}
),

fits as (
    {%- if fits is not none %}
        select
            {{ model_key('model') }} as model_key,
            lower(hardware) as hardware_key,
            source || ' fit of ' || strftime(fitted_at, '%Y-%m-%dT%H:%M:%SZ') || ' (n=' || nobs || ')' as fit_label,
            alpha_in, alpha_out, alpha_in_out,
            cov_in_in, cov_in_out, cov_in_in_out, cov_out_out, cov_out_in_out, cov_in_out_in_out,
            resid_variance, t_975
        from {{ fits }}
        where
            target = 'energy' and form = 'paper' and t_975 is not null and alpha_in is not null
        qualify row_number() over (
            partition by {{ model_key('model') }}, lower(hardware)
            order by (source = 'telemetry') desc, fitted_at desc
        ) = 1
    {%- else %}
        select
            cast(null as varchar) as model_key,
            cast(null as varchar) as hardware_key,
            cast(null as varchar) as fit_label,
            cast(null as double) as alpha_in, cast(null as double) as alpha_out, cast(null as double) as alpha_in_out,
            cast(null as double) as cov_in_in,
            cast(null as double) as cov_in_out,
            cast(null as double) as cov_in_in_out,
            cast(null as double) as cov_out_out,
            cast(null as double) as cov_out_in_out,
            cast(null as double) as cov_in_out_in_out,
            cast(null as double) as resid_variance, cast(null as double) as t_975
        where false
    {%- endif %}
),

model_factor_keys as (
    select distinct
        alias_key,
        factor_model
    from {{ ref('stg_factors__models') }}
),

training as (
    select
        a.alias_key,
        t.factor_model,
        t.month,
        t.training_g_co2e_per_inference,
        t.fine_tuning_g_co2e_per_inference,
        t.training_water_l_per_inference + t.fine_tuning_water_l_per_inference as training_water_l_per_inference,
        t.rate_basis,
        t.source,
        t.version
    from {{ ref('dim_model_training_rates') }} as t
    inner join model_factor_keys as a on t.factor_model = a.factor_model
),

joined as (
    select
        r.request_id,
        r.cluster,
        r.model,
        r.start_day as day,
        r.start_time,
        r.duration_s,
        r.input_tokens,
        r.output_tokens,
        r.tenant,
        r.endpoint,
        r.hardware,
        f.zone,
        f.pue,
        f.pue_low,
        f.pue_high,
        m.*,
        -- overlaps are computed from epoch seconds (~1.7e9): sub-millisecond differences are rounding, not gaps
        case
            when r.duration_s > 0 and r.duration_s - m.telemetry_covered_s > 1e-3
                then (r.duration_s - m.telemetry_covered_s) / r.duration_s
            else 0
        end as uncovered_fraction,
        p.alpha_in * r.input_tokens + p.alpha_out * r.output_tokens
        + p.alpha_in_out * r.input_tokens * r.output_tokens as predicted_j,
        p.t_975 * sqrt(
            p.resid_variance
            + p.cov_in_in * r.input_tokens * r.input_tokens
            + p.cov_out_out * r.output_tokens * r.output_tokens
            + p.cov_in_out_in_out * power(r.input_tokens * r.output_tokens, 2)
            + 2 * p.cov_in_out * r.input_tokens * r.output_tokens
            + 2 * p.cov_in_in_out * r.input_tokens * r.input_tokens * r.output_tokens
            + 2 * p.cov_out_in_out * r.output_tokens * r.input_tokens * r.output_tokens
        ) as prediction_half_width_j,
        p.fit_label,
        h.location_g_co2e_per_kwh as start_ci,
        h.location_low_g_co2e_per_kwh as start_ci_low,
        h.location_high_g_co2e_per_kwh as start_ci_high,
        h.market_g_co2e_per_kwh as start_ci_market,
        h.resolution as start_resolution,
        h.grid_source as start_grid_source,
        h.grid_version,
        f.pue_source,
        f.embodied_source,
        f.embodied_water_source,
        f.wue_onsite_l_per_kwh,
        f.ewif_l_per_kwh,
        f.wue_source,
        f.water_source,
        concat_ws(
            '; ',
            'grid ' || coalesce(h.grid_version, 'n/a'),
            'datacenter ' || coalesce(f.datacenter_version, 'n/a'),
            'hardware ' || coalesce(f.hardware_version, 'n/a'),
            'water ' || coalesce(f.water_version, 'n/a'),
            'training ' || coalesce(t.version, 'n/a')
        ) as factor_versions,
        coalesce(r.output_tokens, 0) + 1 as predicted_inferences,
        t.factor_model,
        t.training_g_co2e_per_inference,
        t.fine_tuning_g_co2e_per_inference,
        t.training_water_l_per_inference,
        case
            when t.factor_model is null then 'none: model ''' || r.model || ''' has no entry in factors/models.yml'
            else 'factors.models ' || t.factor_model || ' (' || t.rate_basis || '): ' || t.source
        end as training_source
    from requests as r
    inner join measured as m on r.request_id = m.request_id
    left join factors as f on r.cluster = f.cluster and f.day = {{ partition_day() }}
    left join start_hour as h on r.cluster = h.cluster and r.start_hour = h.start_hour
    left join fits as p on {{ model_key('r.model') }} = p.model_key and lower(r.hardware) = p.hardware_key
    left join training as t
        on {{ model_key('r.model') }} = t.alias_key and t.month = cast(date_trunc('month', r.start_time) as date)
),

predicted as (
    select
        *,
        coalesce(uncovered_fraction * predicted_j, 0) as predicted_it_j,
        coalesce(uncovered_fraction * greatest(predicted_j - prediction_half_width_j, 0), 0) as predicted_it_low_j,
        coalesce(uncovered_fraction * (predicted_j + prediction_half_width_j), 0) as predicted_it_high_j,
        case
            when uncovered_fraction = 0 then 'telemetry'
            when predicted_j is null and telemetry_covered_s > 0 then 'telemetry (partial: no energy model to fill in)'
            when predicted_j is null then 'none: no telemetry and no energy model'
            when telemetry_covered_s > 0 then 'telemetry+predicted'
            else 'predicted'
        end as energy_source
    from joined
),

impact as (
    select
        *,
        it_energy_j + predicted_it_j as total_it_energy_j,
        facility_energy_j + pue * predicted_it_j as total_facility_energy_j,
        location_g + pue * predicted_it_j * start_ci / 3.6e6 as operational_location_g_co2e,
        location_low_g + pue_low * predicted_it_low_j * start_ci_low / 3.6e6 as operational_location_low_g_co2e,
        location_high_g + pue_high * predicted_it_high_j * start_ci_high / 3.6e6 as operational_location_high_g_co2e,
        case
            when market_factor_energy_j > 0 or (predicted_it_j > 0 and start_ci_market is not null)
                then market_g + pue * predicted_it_j * coalesce(start_ci_market, start_ci) / 3.6e6
        end as operational_market_g_co2e,
        water_onsite_l + wue_onsite_l_per_kwh * predicted_it_j / 3.6e6 as total_water_onsite_l,
        water_onsite_low_l + wue_onsite_l_per_kwh * predicted_it_low_j / 3.6e6 as total_water_onsite_low_l,
        water_onsite_high_l + wue_onsite_l_per_kwh * predicted_it_high_j / 3.6e6 as total_water_onsite_high_l,
        water_offsite_l + ewif_l_per_kwh * pue * predicted_it_j / 3.6e6 as total_water_offsite_l,
        water_offsite_low_l + ewif_l_per_kwh * pue_low * predicted_it_low_j / 3.6e6 as total_water_offsite_low_l,
        water_offsite_high_l + ewif_l_per_kwh * pue_high * predicted_it_high_j / 3.6e6 as total_water_offsite_high_l,
        coalesce(training_g_co2e_per_inference * predicted_inferences, 0) as training_g_co2e,
        coalesce(fine_tuning_g_co2e_per_inference * predicted_inferences, 0) as fine_tuning_g_co2e,
        coalesce(training_water_l_per_inference * predicted_inferences, 0) as training_water_l
    from predicted
),

final as (
    select
        request_id,
        cluster,
        model,
        day,
        total_it_energy_j as it_energy_j,
        total_facility_energy_j as facility_energy_j,
        operational_location_g_co2e,
        operational_market_g_co2e,
        embodied_g as embodied_g_co2e,
        training_g_co2e,
        fine_tuning_g_co2e,
        total_water_onsite_l as water_onsite_l,
        total_water_offsite_l as water_offsite_l,
        water_embodied_l,
        training_water_l,
        operational_location_g_co2e + embodied_g + training_g_co2e + fine_tuning_g_co2e as total_g_co2e,
        total_water_onsite_l + total_water_offsite_l + water_embodied_l + training_water_l as total_water_l,
        operational_location_g_co2e + embodied_g as consumer_sci_g_co2e,
        -- provenance
        coalesce(start_grid_source, 'none: no grid factor for the zone') as grid_source,
        case
            when annual_factor_energy_j > 0 or (predicted_it_j > 0 and start_resolution = 'annual') then 'annual'
            when start_resolution is null then 'none'
            else 'hourly'
        end as grid_resolution,
        factor_versions,
        -- the request
        start_time,
        duration_s,
        input_tokens,
        output_tokens,
        tenant,
        endpoint,
        hardware,
        zone,
        pue,
        predicted_inferences,
        -- where the energy came from, and its parts
        energy_source,
        it_energy_j as it_energy_measured_j,
        predicted_it_j as it_energy_predicted_j,
        predicted_it_low_j as it_energy_predicted_low_j,
        predicted_it_high_j as it_energy_predicted_high_j,
        fit_label as prediction_fit,
        accelerator_energy_j,
        accelerator_dynamic_energy_j,
        host_energy_j,
        idle_energy_j,
        dynamic_energy_j,
        unallocated_idle_energy_j,
        1 - annual_factor_energy_j / nullif(it_energy_j, 0) as grid_hourly_energy_share,
        market_factor_energy_j / nullif(it_energy_j, 0) as market_factor_energy_share,
        -- bounds
        operational_location_low_g_co2e + embodied_low_g + training_g_co2e + fine_tuning_g_co2e as total_g_co2e_low,
        operational_location_high_g_co2e + embodied_high_g + training_g_co2e + fine_tuning_g_co2e
            as total_g_co2e_high,
        total_water_onsite_low_l + total_water_offsite_low_l + water_embodied_low_l + training_water_l
            as total_water_l_low,
        total_water_onsite_high_l + total_water_offsite_high_l + water_embodied_high_l + training_water_l
            as total_water_l_high,
        operational_location_low_g_co2e,
        operational_location_high_g_co2e,
        embodied_low_g as embodied_low_g_co2e,
        embodied_high_g as embodied_high_g_co2e,
        -- factor provenance
        pue_source,
        wue_source,
        water_source,
        embodied_source,
        embodied_water_source,
        factor_model,
        training_g_co2e_per_inference,
        training_source,
        cast(days as integer) as days_spanned
    from impact
)

select * from final
