"""Results as people read them: tables, CSV, PNG charts, HTML pages, run-to-run changes.

May import: edgeopt.host.errors, edgeopt.host.config, edgeopt.proto. Only the CLI imports it.

    table       plain-text columns
    cases       benchmark cases: checks, ordering, Pareto front, terminal table, CSV, records
    plot, html  the PNG chart and the self-contained HTML page of cases
    history     what changed between runs, beyond the noise
    op_profile  an operator profile as text and as a chart
"""
