{{ config(materialized='view') }}

-- The telemetry the day did not count as measured, one row each, with the reason (docs/telemetry-faults.md):
-- rejected samples (counter glitches and stale counter readings, whose intervals the counter bridges; power readings
-- above the GPU's ceiling) and intervals whose energy is above the ceiling (quarantined, not counted), and the
-- intervals bridged across rejected samples. A view over int_telemetry_intervals.

with intervals as (
    select * from {{ ref('int_telemetry_intervals') }}
    where day = {{ partition_day() }}
),

final as (
    select
        day,
        cluster,
        node,
        gpu,
        case
            when energy_source = 'rejected sample' then 'rejected sample'
            when quarantine_reason is not null then 'quarantined interval'
            else 'bridged interval'
        end as kind,
        {{ timestamp_from_epoch_s('t0_s') }} as t0,
        {{ timestamp_from_epoch_s('t1_s') }} as t1,
        dt_s,
        energy_j,
        quarantined_energy_j,
        coalesce(quarantine_reason, bridge_reason) as reason
    from intervals
    where quarantine_reason is not null or bridge_reason is not null
)

select * from final
