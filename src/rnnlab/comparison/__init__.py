"""The parts of the compare stage (`python -m rnnlab.compare`), one job a module.

    runs.py           the planned runs read from their folders, checked against the pipeline's settings
    table.py          table.md, and the DVC metrics and plot data (scores.json, CSVs)
    claims.py         the article's claims judged with intervals (the statistics)
    failures.py       failed (diverged) and unstable runs: counted, and the claims with failures at chance
    claims_report.py  claims.md, the verdicts written out
    figures.py        accuracy against training time
    champion.py       the best run registered as the champion
    plot_templates.py the .dvc/plots/ templates' cell colours, written from the registry
"""
