"""The host's state database: deployments, benchmark runs and cases, tunings.

May import: edgeopt.host.errors, edgeopt.host.config. SQLite by default, PostgreSQL by URL.

    state  schema, migrations and the repositories
"""
