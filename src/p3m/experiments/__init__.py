"""The paper's studies as functions: each runs a table's cells and writes it in the paper's layout.

===========================  ================================================  ===================
study                        function                                          command
===========================  ================================================  ===================
Table 2  (baselines, B/N)    `baselines.run_baseline_study`                    experiment baselines
Table 7  (ablation)          `ablation.run_ablation_study`                     experiment ablation
Table 8  (obfuscation)       `obfuscation.run_obfuscation_study`               experiment obfuscation
Tables 9/10 (P3M-CP)         `copy_paste.run_copy_paste_study`                 experiment copy-paste
Table 11 (complexity)        `p3m.evaluation.complexity.run_complexity`        experiment complexity
beyond the paper             `sensitivity.run_sensitivity`                     experiment sensitivity
===========================  ================================================  ===================

Every study runs over a P3M-10k-layout data root (or, for the sensitivity study, any images)
on the folder-run engine (`p3m.runs`) through `runner` (cells, resume, per-image CSVs, the
metrics.json of each cell, the JSON summary, the table as Markdown and CSV); progress is
reported as typed events (`events`) that only `p3m.cli` renders. `matting` holds the cell of a
checkpoint on a test set, `heatmap` the sensitivity study's sheets.

Layer: with evaluation and training (it uses inference, privacy, evaluation and models;
nothing below imports it).

    >>> from p3m.experiments.obfuscation import ObfuscationSettings, run_obfuscation_study
    >>> result = run_obfuscation_study(ObfuscationSettings(Path("r34.pth"), Path("P3M-10k")), Path("out"))
    >>> print(result.table.to_markdown())
"""

from __future__ import annotations
