{{ config(materialized='view') }}

-- Training and fine-tuning amortised per inference, one rate per factor model and calendar month, re-projected
-- monthly from observed volume (intermediate.int_model_training_rates computes the recurrence).

select * from {{ ref('int_model_training_rates') }}
