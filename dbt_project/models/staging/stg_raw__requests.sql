with source as (
    select * from {{ source('raw', 'requests') }}
),

final as (
    select
        partition_day,
        request_key,
        request_id,
        cluster,
        model,
        start_time,
        duration_s,
        {{ add_microseconds('start_time', 'cast(round(duration_s * 1e6) as bigint)') }} as end_time,
        input_tokens,
        output_tokens,
        tenant,
        endpoint,
        node,
        gpu,
        -- image requests (orchestration/lib/images/requests.py): text rows have modality 'text' and no image fields
        {%- for col in image_field_names() %}
            {{ col }},
        {%- endfor %}
        source_file,
        source_row
    from source
)

select * from final
