{{ config(meta={'partition_days_back': 1}) }}

-- Impact per start day x cluster x model x tenant x modality, for analysts: totals, per-request means and
-- medians, bounds, per image and per megapixel-step for image requests, and how much of it rests on predictions or
-- annual grid factors. The previous day is recomputed too (its
-- requests that ran past midnight are completed by this day's materialisation).

with impact as (
    select * from {{ ref('fct_request_impact') }}
    where day between {{ partition_day() }} - 1 and {{ partition_day() }}
),

final as (
    select
        day,
        cluster,
        model,
        coalesce(tenant, '(none)') as tenant,
        modality,
        count(*) as requests,
        cast(sum(predicted_inferences) as bigint) as inferences,
        cast(sum(input_tokens) as bigint) as input_tokens,
        cast(sum(output_tokens) as bigint) as output_tokens,
        sum(it_energy_j) as it_energy_j,
        sum(accelerator_energy_j) as accelerator_energy_j,
        sum(facility_energy_j) as facility_energy_j,
        sum(operational_location_g_co2e) as operational_location_g_co2e,
        sum(operational_market_g_co2e) as operational_market_g_co2e,
        sum(embodied_g_co2e) as embodied_g_co2e,
        sum(training_g_co2e) as training_g_co2e,
        sum(fine_tuning_g_co2e) as fine_tuning_g_co2e,
        sum(total_g_co2e) as total_g_co2e,
        sum(total_g_co2e_low) as total_g_co2e_low,
        sum(total_g_co2e_high) as total_g_co2e_high,
        sum(consumer_sci_g_co2e) as consumer_sci_g_co2e,
        sum(water_onsite_l) as water_onsite_l,
        sum(water_offsite_l) as water_offsite_l,
        sum(water_embodied_l) as water_embodied_l,
        sum(training_water_l) as training_water_l,
        sum(total_water_l) as total_water_l,
        sum(total_water_l_low) as total_water_l_low,
        sum(total_water_l_high) as total_water_l_high,
        sum(facility_energy_j) / count(*) / 3600 as mean_facility_energy_wh_per_request,
        {{ median('facility_energy_j') }} / 3600 as median_facility_energy_wh_per_request,
        {{ median('accelerator_energy_j') }} / 3600 as median_accelerator_energy_wh_per_request,
        {{ median('total_g_co2e') }} as median_total_g_co2e_per_request,
        {{ median('total_water_l') }} * 1000 as median_total_water_ml_per_request,
        sum(total_g_co2e) / nullif(sum(output_tokens), 0) as total_g_co2e_per_output_token,
        count(case when energy_source <> 'telemetry' then 1 end) as requests_not_fully_metered,
        count(case when grid_resolution <> 'hourly' then 1 end) as requests_with_annual_grid_factor,
        count(case when factor_model is null then 1 end) as requests_without_training_factor,
        -- image requests (null for text)
        cast(sum(images) as bigint) as images,
        sum(megapixel_steps) as megapixel_steps,
        sum(facility_energy_j) / nullif(sum(images), 0) / 3600 as facility_energy_wh_per_image,
        sum(it_energy_j) / nullif(sum(megapixel_steps), 0) as it_energy_j_per_megapixel_step,
        sum(total_g_co2e) / nullif(sum(images), 0) as total_g_co2e_per_image,
        sum(total_water_l) / nullif(sum(images), 0) as total_water_l_per_image,
        count(case when adapters_without_factor is not null then 1 end) as requests_with_unknown_adapter
    from impact
    group by day, cluster, model, coalesce(tenant, '(none)'), modality
)

select * from final
