-- Requests and inferences (output tokens + 1 per request: the forward passes of METHODOLOGY section 4) served per
-- model on each UTC day, by the day the request started: the observed volume training footprints are amortised
-- over (intermediate.int_model_training_rates).

with requests as (
    select * from {{ ref('stg_raw__requests') }}
    where partition_day = {{ partition_day() }} and cast(start_time as date) = {{ partition_day() }}
),

final as (
    select
        {{ partition_day() }} as day,
        model,
        count(*) as requests,
        cast(sum(coalesce(output_tokens, 0) + 1) as bigint) as inferences
    from requests
    group by model
)

select * from final
