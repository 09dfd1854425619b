"""Generative methods on a looped network: masked token modelling (MaskGIT), diffusion (DiT), ILSD, loop schedules."""
