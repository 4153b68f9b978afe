with source as (
    select * from {{ source('raw', 'telemetry_samples') }}
),

final as (
    select
        partition_day,
        series_key,
        logical_key,
        cluster,
        node,
        gpu,
        cpu,
        mode,
        metric,
        quantity,
        sample_time,
        {{ epoch_s('sample_time') }} as sample_epoch_s,
        value
    from source
)

select * from final
