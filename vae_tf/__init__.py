"""vae-tf: variational autoencoders with better inference, as DVC pipeline stages."""
