"""Measuring models: Frechet distances and KID, Inception and I3D features, the domain classifier, the embedded
and the paper protocols, parameter and FLOP accounting."""
