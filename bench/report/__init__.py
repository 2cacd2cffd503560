"""fastattn's benchmark report as a package (run it with `python3 bench/report.py` or
`PYTHONPATH=bench python3 -m report`).

    fmt        number, time and text formatting
    methods    the method registry: order, colours, markers, roles, parameters
    data       reading bench.json (Google Benchmark) and accuracy.json
    analysis   time sweeps, crossovers, Pareto fronts, the headline's picks
    figures    the charts (matplotlib), from plain data to inline SVG
    tables     table models rendered as HTML and markdown
    sections   one builder per page section, and their order
    page       the HTML page and the markdown headline
    check      --check: is the written page complete and clean
    __main__   the command line
"""
