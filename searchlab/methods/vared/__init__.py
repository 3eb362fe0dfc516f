"""VA-RED² (METHODS.md §3): soft gates choose, per input and layer, how much temporal and channel
computation to do; the rest is reconstructed by cheap linear operations.

The network core, plain PyTorch: ``gate`` (a layer's gate p_l), ``cheap_ops`` (the cheap ops Φ^c and
Φ^t), ``dynamic_conv`` (one gated convolution and its alternatives), ``network`` (``VaredNetwork``:
R(2+1)D or a TSN ResNet with its convolutions wrapped), ``costs`` (the fvcore cost model) and
``losses`` (the efficiency loss L_e). Importing this package imports nothing but itself.
"""
