"""Training of every P3M-Net variant: losses, config, trainer, DDP (`python -m p3m.training`).

Import the submodules directly: `losses`, `config` (YAML dataclasses), `trainer` (the loop),
`distributed` (process group), `state` (RNG and resumable checkpoints), `events` (progress),
`hooks` (the trainer's extension point), `copy_paste` (P3M-CP: operation, sources, ICP/FCP).
This package imports nothing heavy.
"""
