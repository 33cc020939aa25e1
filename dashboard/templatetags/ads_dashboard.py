"""Template tags that put the top floor's reads into admin templates.

The admin index calls ``operator_dashboard`` instead of a custom AdminSite: the default site stays
as it is (every app registers on it) and the dashboard is one tag in ``templates/admin/index.html``.
App templates (the campaign pages) call ``spend_sparkline`` and ``recent_budget_changes`` so that
the campaigns app itself imports neither ``adsplatform`` nor ``optimization``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import template
from django.utils.safestring import SafeString

from dashboard import svg
from dashboard.context import dashboard_context
from dashboard.queries import optional_model
from platforms.base import format_money

register = template.Library()


@register.inclusion_tag("admin/dashboard/dashboard.html", takes_context=True)
def operator_dashboard(context: template.Context) -> dict[str, Any]:
    request = context["request"]
    return {"request": request, **dashboard_context(request.GET, user=request.user)}


@register.simple_tag
def spend_sparkline(values: Sequence[float], label: str, chart_id: str = "") -> SafeString:
    return svg.sparkline(list(values), label=label, chart_id=chart_id)


@register.inclusion_tag("admin/campaigns/campaign/recent_budget_changes.html")
def recent_budget_changes(campaign: Any, limit: int = 3) -> dict[str, Any]:
    """The campaign's last budget changes (OptimizationRun), when the optimization app is installed."""
    run_model = optional_model("optimization", "OptimizationRun")
    if run_model is None or campaign is None or campaign.pk is None:
        return {"installed": run_model is not None, "changes": []}
    currency = campaign.account.currency_code
    runs = run_model.objects.filter(campaign=campaign).select_related("requested_by").order_by("-created_at", "-id")
    return {
        "installed": True,
        "changes": [
            {
                "run": run,
                "old": format_money(run.old_budget_micros, currency),
                "new": format_money(run.new_budget_micros, currency),
            }
            for run in runs[:limit]
        ],
    }
