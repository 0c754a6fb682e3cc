"""Data for P3M training: the P3M-10k / RWP-636 layouts, trimaps, augmentation, synthetic data.

Import the submodules directly (`p3m.data.layout`, `p3m.data.transforms`, `p3m.data.datasets`,
`p3m.data.synthetic`, `p3m.data.trimap`); test-set names are in `p3m.vocabulary`; this package imports nothing heavy.
"""
