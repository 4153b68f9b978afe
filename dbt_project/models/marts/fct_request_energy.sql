{{ config(materialized='view') }}

-- Energy attributed to each request (METHODOLOGY section 3), summed over every day it ran in; `day` is the UTC
-- day it started. A view over intermediate.int_request_days: a request inside one day is its one row there; one
-- that ran past midnight adds up its days (complete once both days have been materialised, in any order).
-- Image requests (modality 'image') carry their fields and the energy per image and per megapixel-step:
--   megapixel_steps = images x width x height / 1e6 x floor(steps x strength)   (the denoising work asked for)

{%- set attributes = [
    'cluster', 'model', 'start_time', 'duration_s', 'input_tokens', 'output_tokens', 'tenant', 'endpoint', 'node',
    'gpu', 'attribution_level', 'image_fields'] %}
{%- set summed = [
    'idle_energy_j', 'dynamic_energy_j', 'unallocated_idle_energy_j', 'it_energy_j', 'request_seconds',
    'concurrency_seconds'] %}

with request_days as (
    {{ request_days_by_request(attributes, summed) }}
),

unpacked as (
    select
        *,
        {{ unpack_image_fields('image_fields') | indent(8) }}
    from request_days
),

requests as (
    select
        u.*,
        {{ image_megapixel_steps('u') }} as megapixel_steps
    from unpacked as u
),

final as (
    select
        request_id,
        cluster,
        model,
        start_time,
        duration_s,
        input_tokens,
        output_tokens,
        idle_energy_j,
        dynamic_energy_j,
        unallocated_idle_energy_j,
        it_energy_j,
        day,
        request_seconds,
        tenant,
        endpoint,
        node,
        gpu,
        days_spanned,
        concurrency_seconds / nullif(request_seconds, 0) as mean_concurrency,
        days_materialised,
        attribution_level,
        {%- for col in image_field_names() %}
            {{ col }},
        {%- endfor %}
        megapixel_steps,
        it_energy_j / images as it_energy_j_per_image,
        it_energy_j / nullif(megapixel_steps, 0) as it_energy_j_per_megapixel_step
    from requests
)

select * from final
