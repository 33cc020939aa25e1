"""The operator dashboard: every app's numbers for a date range and an account, in a fixed number
of queries. It lives on the top floor because it reads every app; no app imports it.

- ``queries``: the aggregate reads (accounts, metrics by account and day, budgets by account,
  conversion outcomes by day, leads by day, open alerts), each bounded whatever the data size.
  Everything else is derived in Python from those few rows.
- ``data``: ``dashboard_data`` puts them together. Money stays per currency: an account has one
  currency, so rows are grouped by account in SQL and added up per currency there, never across.
  The two aggregates that scan a lot are cached: metrics by account and day under the campaigns
  cache generation (every committed sync bumps it, so new numbers show at once), conversion
  outcomes for a minute. Everything else is read live on every render.
- ``attention``: what is wrong right now (alerts, platform outages, stuck pushes, workers).
- ``charts`` / ``svg``: the charts, each with a table of the same numbers.
- ``context`` and ``templatetags.ads_dashboard``: what the admin index renders.

Every read is scoped to the accounts the viewer may see (``campaigns.access``).
"""
