with source as (
    select * from {{ source('raw', 'telemetry_series') }}
),

final as (
    select
        series_key,
        logical_key,
        cluster,
        node,
        gpu,
        node_label,
        gpu_label,
        gpu_uuid,
        pci_bus_id,
        cpu,
        mode,
        metric,
        quantity
    from source
)

select * from final
