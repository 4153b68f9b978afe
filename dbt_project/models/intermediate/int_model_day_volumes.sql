-- Requests and inferences served per model on each UTC day, by the day the request started: the observed volume
-- training footprints are amortised over (intermediate.int_model_training_rates). Inferences: output tokens + 1
-- per text request (the forward passes of METHODOLOGY section 4), the images generated per image request. A LoRA
-- adapter (kind 'adapter') serves the inferences of the requests that name it.

with requests as (
    select * from {{ ref('stg_raw__requests') }}
    where partition_day = {{ partition_day() }} and cast(start_time as date) = {{ partition_day() }}
),

served as (
    select
        model,
        lora,
        case when modality = 'image' then images else coalesce(output_tokens, 0) + 1 end as inferences
    from requests
),

models as (
    select
        model,
        'model' as kind,
        count(*) as requests,
        cast(sum(inferences) as bigint) as inferences
    from served
    group by model
),

adapters as (
    select
        adapter as model,
        'adapter' as kind,
        count(*) as requests,
        cast(sum(inferences) as bigint) as inferences
    from (
        select
            {{ explode_list('lora') }} as adapter,
            inferences
        from served
        where lora is not null
    ) as used
    group by adapter
),

final as (
    select {{ partition_day() }} as day, * from models
    union all
    select {{ partition_day() }} as day, * from adapters
)

select * from final
