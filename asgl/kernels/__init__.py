"""Hand-written kernels (Triton) behind the LIF backends of asgl.neuron."""
