"""Training of every P3M-Net variant: losses, config, trainer, DDP (`python -m p3m.training`).

Import the submodules directly (`p3m.training.losses`, `p3m.training.config`,
`p3m.training.trainer`); this package imports nothing heavy.
"""
