"""Settings a recipe picks from a fixed list of names that no registry holds, each list written once: the recipe
schema (:mod:`asgl.config`) and the components that implement them (spike, neuron, surrogate width, norms) read
it from here. No torch and no pydantic, so the schema loads before any heavy import.
"""

from typing import Literal

NeuronModel = Literal["lif", "if", "alif"]  # leaky, integrate-and-fire (no leak), adaptive-threshold leaky
# the spike function in training: asgl (mixed by a mask), sg (Θ forward, h_α backward), heaviside (Θ)
TrainingSpike = Literal["asgl", "sg", "heaviside"]
Spike = Literal[TrainingSpike, "analog"]  # and analog (H_α, p = 1), a spike of the diagnosis
Reset = Literal["hard", "soft"]  # ũ = u (1 − s), or ũ = u − θ s
Amplitude = Literal["threshold", "unit"]  # spike output θ s (reference) or s
WidthGrad = Literal["all", "analog"]  # width gradient from every element, or analog elements only
NormKind = Literal["tdbn", "bntt", "step", "threshold_bn", "none"]  # the norm before each LIF layer
Granularity = Literal["layer", "channel", "neuron"]  # one surrogate width per layer, channel or neuron
Storage = Literal["log_slope", "raw_slope"]  # the width stored as log k (k > 0 always), or k itself
