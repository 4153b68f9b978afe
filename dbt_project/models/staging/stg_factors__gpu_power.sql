with source as (
    select * from {{ source('factors', 'gpu_power') }}
),

final as (
    select
        hardware,
        {{ gpu_model_key('hardware') }} as hardware_key,
        cast(max_power_w as double) as max_power_w,
        {{ factor_provenance() }}
    from source
)

select * from final
