"""The diffusion core: network F, EDM preconditioning and loss, samplers, condition encoding."""
