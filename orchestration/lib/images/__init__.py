"""Image-generation requests (diffusion: Stable Diffusion, SDXL, FLUX behind diffusers, ComfyUI or a custom server).

- ``requests``: the image fields of a request log row (size, steps, strength, guidance, quality, LoRA adapters), their
  validation and the quality-label table (``factors.image_quality``);
- ``physics``: a documented physical model of a diffusion request's runtime and energy (profiling runs and the
  simulator are generated from it; the statistical models are checked against it);
- ``models``: the image energy and runtime models (statsmodels OLS), their candidate forms and diagnostics;
- ``predict``: predictions with 95 % intervals from stored fits (``impact predict`` with image options);
- ``simulate``: a simulated diffusion cluster (``impact simulate --images``) on the text simulator's machinery.

Pure library code: no Dagster imports. See docs/images.md.
"""
