{#-
    Image requests (docs/images.md; orchestration/lib/images/models.py has the same definitions in Python, and
    tests check that the two agree).

    The regressors of the image energy and runtime models, per request r (width, height, images, steps, strength,
    input_width, input_height, guidance, lora as in raw.requests):
        MP          = width x height / 1e6                       output megapixels
        s           = floor(steps x strength)                    denoising steps run (image-to-image: diffusers'
                                                                 int(steps x strength))
        g           = 2 with classifier-free guidance, else 1    the denoiser's batch is doubled by guidance
        request     = 1                                          per call: text encoder, scheduler, overheads
        step        = s                                          per-step overhead, whatever the size
        denoise     = images x s x g x MP                        denoiser work, linear in pixels
        attention   = images x s x g x MP^2                      self-attention over the latent tokens
        decode      = images x MP                                VAE decode of each image
        encode      = input megapixels (the output's size for image-to-image without an input size), else 0
        lora        = adapters x denoise                         unfused LoRA adapters add work per step
-#}

{#-
    The image fields of intermediate.int_request_days' JSON column `col` (null for a text request without LoRA
    adapters) as the marts' typed columns; modality 'text' when there is none.
-#}
{% macro unpack_image_fields(col) -%}
    coalesce({{ json_field_text(col, 'modality') }}, 'text') as modality,
    {%- for name, type in [
        ('width', 'bigint'), ('height', 'bigint'), ('images', 'bigint'), ('steps', 'bigint'), ('strength', 'double'),
        ('input_width', 'bigint'), ('input_height', 'bigint'), ('guidance', 'boolean'), ('quality', type_string())] %}
    cast({{ json_field_text(col, name) }} as {{ type }}) as {{ name }},
    {%- endfor %}
    {{ json_field_text_list(col, 'lora') }} as lora,
    {{ json_field_text_list(col, 'adapters_without_factor') }} as adapters_without_factor
{%- endmacro %}

{#- The image fields of a request as raw.requests and the request marts name them (docs/images.md), in order. -#}
{% macro image_field_names() -%}
    {{ return([
        'modality', 'width', 'height', 'images', 'steps', 'strength', 'input_width', 'input_height', 'guidance',
        'quality', 'lora']) }}
{%- endmacro %}

{% macro image_terms() -%}
    {{ return(['request', 'step', 'denoise', 'attention', 'decode', 'encode', 'lora']) }}
{%- endmacro %}

{#- megapixel-steps of a request: images x output megapixels x denoising steps run (no guidance factor) -#}
{% macro image_megapixel_steps(r) -%}
    ({{ r }}.images * {{ r }}.width * {{ r }}.height / 1e6 * floor({{ r }}.steps * coalesce({{ r }}.strength, 1)))
{%- endmacro %}

{% macro image_term(term, r) -%}
    {%- set denoise -%}
        ({{ r }}.images * floor({{ r }}.steps * coalesce({{ r }}.strength, 1))
        * case when coalesce({{ r }}.guidance, true) then 2 else 1 end * {{ r }}.width * {{ r }}.height / 1e6)
    {%- endset -%}
    {%- if term == 'request' -%}
        1.0
    {%- elif term == 'step' -%}
        floor({{ r }}.steps * coalesce({{ r }}.strength, 1))
    {%- elif term == 'denoise' -%}
        {{ denoise }}
    {%- elif term == 'attention' -%}
        ({{ denoise }} * {{ r }}.width * {{ r }}.height / 1e6)
    {%- elif term == 'decode' -%}
        ({{ r }}.images * {{ r }}.width * {{ r }}.height / 1e6)
    {%- elif term == 'encode' -%}
        (case
            when {{ r }}.input_width is not null then {{ r }}.input_width * {{ r }}.input_height / 1e6
            when {{ r }}.strength < 1 then {{ r }}.width * {{ r }}.height / 1e6
            else 0
        end)
    {%- elif term == 'lora' -%}
        (coalesce({{ list_length(r ~ '.lora') }}, 0) * {{ denoise }})
    {%- else -%}
        {{ exceptions.raise_compiler_error('unknown image term ' ~ term) }}
    {%- endif -%}
{%- endmacro %}

{#- The fit f's mean prediction for request r: sum of alpha_t x term_t (a term the fit has not: 0) -#}
{% macro image_prediction_mean(f, r, prefix='') -%}
    (
        {%- for t in image_terms() %}
            {% if not loop.first %}+ {% endif %}coalesce({{ f }}.{{ prefix }}alpha_{{ t }}, 0) * {{ image_term(t, r) }}
        {%- endfor %}
    )
{%- endmacro %}

{#- Half-width of the fit's 95 % prediction interval: t_975 x sqrt(s^2 + x'Vx), statsmodels' obs_ci -#}
{% macro image_prediction_half_width(f, r, prefix='') -%}
    {%- set terms = image_terms() -%}
    ({{ f }}.{{ prefix }}t_975 * sqrt({{ f }}.{{ prefix }}resid_variance
        {%- for a in terms %}
            {%- set i = loop.index0 %}
            {%- for b in terms[i:] %}
        + {% if a != b %}2 * {% endif %}coalesce({{ f }}.{{ prefix }}cov_{{ a }}_{{ b }}, 0) * {{ image_term(a, r) }}
            * {{ image_term(b, r) }}
            {%- endfor %}
        {%- endfor %}
    ))
{%- endmacro %}

{#-
    Whether the partition day has image requests or requests naming LoRA adapters (a query when the model is
    compiled, as dbt_utils.get_column_values does). int_request_days compiles without its image parts on a day that
    has none: on millions of text requests, joining even an empty image table costs a few per cent of the model.
    The var `image_requests` (true/false) overrides the query (the dbt unit tests set it).
-#}
{% macro has_image_requests() -%}
    {%- if var('image_requests', none) is not none -%}
        {{ return(var('image_requests') | as_bool) }}
    {%- endif -%}
    {%- if not execute -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(database=target.database, schema='staging', identifier='stg_raw__requests') -%}
    {%- if relation is none -%}
        {{ return(true) }}
    {%- endif -%}
    {%- set found = run_query(
        'select count(*) from ' ~ relation_without_database(relation) ~ ' where partition_day = '
        ~ partition_day() ~ " and (modality = 'image' or lora is not null)"
    ) -%}
    {{ return(found.columns[0].values()[0] > 0) }}
{%- endmacro %}

{#-
    models.image_model_fits, written by the Dagster `models` assets, when it exists; none otherwise (a first run):
    the image predictions of int_request_days then have no fit, as the text ones without energy_model_fits.
-#}
{% macro image_model_fits_relation() -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(database=target.database, schema='models', identifier='image_model_fits') -%}
    {%- if relation is none -%}
        {{ return(none) }}
    {%- endif -%}
    {{ return(relation_without_database(relation)) }}
{%- endmacro %}
