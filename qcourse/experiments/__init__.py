"""Experiments that motivate a method, kept out of the method's own module:

    salient_weights   AWQ's first experiment: keep 1 % of the input channels in float
                      (by activation, weight or at random) and see what it recovers
    rotation          perplexity with W4A8 / W4A4 activations, with and without QuaRot's rotation
"""
