{{ config(materialized='view') }}

-- Impact of each request (METHODOLOGY section 5, CONTRACT section 3), summed over every day it ran in; `day` is
-- the UTC day it started. A view over intermediate.int_request_days (where every term is computed, with the
-- formulas), adding up the days of a request that ran past midnight and naming the factors it used:
--   facility energy   = PUE x IT energy (PUE applied once, that day's PUE)
--   operational       = PUE x IT energy x the grid intensity of each window's hour (location- and market-based)
--   embodied          = the hardware's embodied carbon per provisioned second, shared like idle energy
--   water             = on-site WUE x IT energy + EWIF(zone) x facility energy + embodied water + training water
--   training          = the model's monthly rate per inference x inferences (output tokens + 1; an image request:
--                       its images), apart from the consumer score; fine-tuning adds the LoRA adapters' own rates
--   totals            total_g_co2e = operational (location) + embodied + training + fine-tuning;
--                     consumer_sci_g_co2e = operational (location) + embodied; total_water_l = the four waters
-- IT energy includes the energy model's estimate for time no telemetry covered (energy_source says so).

{%- set summed = [
    'request_seconds', 'telemetry_covered_s', 'uncovered_s', 'idle_energy_j', 'dynamic_energy_j',
    'unallocated_idle_energy_j', 'it_energy_j', 'accelerator_energy_j', 'accelerator_dynamic_energy_j',
    'host_energy_j', 'it_energy_predicted_j', 'it_energy_predicted_low_j', 'it_energy_predicted_high_j',
    'facility_energy_j', 'operational_location_g_co2e', 'operational_location_low_g_co2e',
    'operational_location_high_g_co2e', 'operational_market_g_co2e', 'market_factor_energy_j',
    'annual_factor_energy_j', 'embodied_g_co2e', 'embodied_low_g_co2e', 'embodied_high_g_co2e', 'water_onsite_l',
    'water_offsite_l', 'water_embodied_l', 'training_g_co2e', 'fine_tuning_g_co2e', 'training_water_l',
    'total_g_co2e', 'total_g_co2e_low', 'total_g_co2e_high', 'total_water_l', 'total_water_l_low',
    'total_water_l_high'] %}
{%- set attributes = [
    'cluster', 'model', 'start_time', 'duration_s', 'input_tokens', 'output_tokens', 'tenant', 'endpoint',
    'image_fields'] %}

with request_days as (
    {{ request_days_by_request(attributes, summed, ['prediction_fit', 'factor_model']) }}
),

requests as (
    select
        *,
        {{ unpack_image_fields('image_fields') | indent(8) }}
    from request_days
),

clusters as (
    select * from {{ ref('stg_raw__clusters') }}
),

day_factors as (
    select * from {{ ref('int_cluster_day_factors') }}
),

hours as (
    select * from {{ ref('int_cluster_hour_intensity') }}
),

training as (
    select * from {{ ref('dim_model_training_rates') }}
),

final as (
    select
        r.request_id,
        r.cluster,
        r.model,
        r.day,
        r.it_energy_j + r.it_energy_predicted_j as it_energy_j,
        r.facility_energy_j,
        r.operational_location_g_co2e,
        r.operational_market_g_co2e,
        r.embodied_g_co2e,
        r.training_g_co2e,
        r.fine_tuning_g_co2e,
        r.water_onsite_l,
        r.water_offsite_l,
        r.water_embodied_l,
        r.training_water_l,
        r.total_g_co2e,
        r.total_water_l,
        r.operational_location_g_co2e + r.embodied_g_co2e as consumer_sci_g_co2e,
        -- provenance
        coalesce(h.grid_source, 'none: no grid factor for the zone') as grid_source,
        case
            when r.annual_factor_energy_j > 0 then 'annual'
            when h.resolution is null then 'none'
            else 'hourly'
        end as grid_resolution,
        concat_ws(
            '; ',
            'grid ' || coalesce(h.grid_version, 'n/a'),
            'datacenter ' || coalesce(f.datacenter_version, 'n/a'),
            'hardware ' || coalesce(f.hardware_version, 'n/a'),
            'water ' || coalesce(f.water_version, 'n/a'),
            'training ' || coalesce(t.version, 'n/a')
        ) as factor_versions,
        -- the request
        r.start_time,
        r.duration_s,
        r.input_tokens,
        r.output_tokens,
        r.tenant,
        r.endpoint,
        c.gpu_model as hardware,
        f.zone,
        f.pue,
        -- inferences: one forward pass per output token plus the prefill (text); the images generated (image)
        cast(case when r.modality = 'image' then r.images else coalesce(r.output_tokens, 0) + 1 end as bigint)
            as predicted_inferences,
        -- where the energy came from, and its parts
        case
            when r.uncovered_s = 0 then 'telemetry'
            when r.prediction_fit is null and r.telemetry_covered_s > 0
                then 'telemetry (partial: no energy model to fill in)'
            when r.prediction_fit is null then 'none: no telemetry and no energy model'
            when r.telemetry_covered_s > 0 then 'telemetry+predicted'
            else 'predicted'
        end
        -- a request that ran past midnight is complete once every day it ran in has been materialised
        || case
            when r.days_materialised < r.days_spanned
                then ' (incomplete: ' || (r.days_spanned - r.days_materialised) || ' of its days not materialised)'
            else ''
        end as energy_source,
        r.it_energy_j as it_energy_measured_j,
        r.it_energy_predicted_j,
        r.it_energy_predicted_low_j,
        r.it_energy_predicted_high_j,
        r.prediction_fit,
        r.accelerator_energy_j,
        r.accelerator_dynamic_energy_j,
        r.host_energy_j,
        r.idle_energy_j,
        r.dynamic_energy_j,
        r.unallocated_idle_energy_j,
        1 - r.annual_factor_energy_j / nullif(r.it_energy_j + r.it_energy_predicted_j, 0) as grid_hourly_energy_share,
        r.market_factor_energy_j / nullif(r.it_energy_j, 0) as market_factor_energy_share,
        -- bounds
        r.total_g_co2e_low,
        r.total_g_co2e_high,
        r.total_water_l_low,
        r.total_water_l_high,
        r.operational_location_low_g_co2e,
        r.operational_location_high_g_co2e,
        r.embodied_low_g_co2e,
        r.embodied_high_g_co2e,
        -- factor provenance
        f.pue_source,
        f.wue_source,
        f.water_source,
        f.embodied_source,
        f.embodied_water_source,
        r.factor_model,
        t.training_g_co2e_per_inference,
        case
            when r.factor_model is null
                then
                    {{ text_literal("none: model '") }} || r.model
                    || {{ text_literal("' has no entry in factors/models.yml") }}
            else 'factors.models ' || r.factor_model || ' (' || t.rate_basis || '): ' || t.source
        end as training_source,
        r.days_spanned,
        r.days_materialised,
        -- image requests (docs/images.md): their fields, and energy, carbon and water per image and per
        -- megapixel-step (images x width x height / 1e6 x floor(steps x strength))
        r.modality,
        r.width,
        r.height,
        r.images,
        r.steps,
        r.strength,
        r.input_width,
        r.input_height,
        r.guidance,
        r.quality,
        r.lora,
        {{ image_megapixel_steps('r') }} as megapixel_steps,
        r.facility_energy_j / r.images / 3600 as facility_energy_wh_per_image,
        r.total_g_co2e / r.images as total_g_co2e_per_image,
        r.total_water_l / r.images as total_water_l_per_image,
        (r.it_energy_j + r.it_energy_predicted_j) / nullif({{ image_megapixel_steps('r') }}, 0)
            as it_energy_j_per_megapixel_step,
        r.adapters_without_factor,
        case
            when r.lora is null then null
            when r.adapters_without_factor is null
                then 'adapters ' || {{ list_join('r.lora', "', '") }} || ': their factors.models rates x inferences'
            else
                'adapters ' || {{ list_join('r.lora', "', '") }} || '; no factor row in factors/models.yml for '
                || {{ list_join('r.adapters_without_factor', "', '") }} || ' (not charged)'
        end as fine_tuning_source
    from requests as r
    left join clusters as c on r.cluster = c.cluster
    left join day_factors as f on r.cluster = f.cluster and r.day = f.day
    left join hours as h on r.cluster = h.cluster and date_trunc('hour', r.start_time) = h.hour_start
    left join training as t
        on r.factor_model = t.factor_model and t.month = cast(date_trunc('month', r.start_time) as date)
)

select * from final
