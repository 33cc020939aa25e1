"""The admin index's context: what templates/admin/index.html shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from django.utils import timezone

from campaigns import access
from dashboard.charts import dashboard_charts
from dashboard.data import dashboard_data
from dashboard.filters import DashboardFilterForm
from dashboard.queries import dashboard_accounts
from webhooks.models import Priority


def dashboard_context(params: Mapping[str, Any], *, user: Any) -> dict[str, Any]:
    """What templates/admin/index.html shows: the filter form, tiles, charts; from the GET params,
    over the accounts ``user`` may see."""
    ids = access.visible_account_ids(user)
    visible = None if ids is None else frozenset(ids)
    accounts = dashboard_accounts(visible_account_ids=visible)
    # The default range ends on the latest of the accounts' todays (their metric dates), not the
    # site's: an account ahead of UTC has already begun a day the site's date would leave out.
    todays = [account.today for account in accounts if account.is_active]
    form = DashboardFilterForm(params, accounts=accounts, today=max(todays, default=timezone.localdate()))
    data = dashboard_data(filters=replace(form.filters(), visible_account_ids=visible), accounts=accounts)
    priority_labels = dict(Priority.choices)
    alert_labels = {"critical": "Critical", "warning": "Warning"}
    return {
        "dashboard": data,
        "dashboard_form": form,
        "dashboard_charts": dashboard_charts(data),
        "dashboard_leads_today": [(priority_labels[p], n) for p, n in data.leads_today.items()],
        "dashboard_alerts": (
            None
            if data.open_alerts is None
            else [(alert_labels.get(severity, severity.title()), n) for severity, n in sorted(data.open_alerts.items())]
        ),
    }
