"""The dashboard's filters: a date range and an account, from the GET form above it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django import forms

from campaigns.coverage import days_of
from dashboard.queries import AccountRow

DEFAULT_DAYS = 30
MAX_DAYS = 366


@dataclass(frozen=True)
class DashboardFilters:
    date_from: date
    date_to: date
    account_id: int | None = None
    # Who is looking (campaigns.access): the accounts they may see, None for every account (and
    # then also the leads and alerts tied to no account).
    visible_account_ids: frozenset[int] | None = None

    @property
    def days(self) -> list[date]:
        return days_of(self.date_from, self.date_to)


class DashboardFilterForm(forms.Form):
    """The GET form above the dashboard; invalid input falls back to the last 30 days, all accounts."""

    date_from = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    date_to = forms.DateField(label="To", widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"))
    account = forms.TypedChoiceField(label="Account", coerce=int, required=False, empty_value=None)

    def __init__(self, data: Mapping[str, Any] | None, *, accounts: list[AccountRow], today: date) -> None:
        self.default_from, self.default_to = today - timedelta(days=DEFAULT_DAYS - 1), today
        # An untouched form (no filter in the URL) is valid: it means the defaults.
        if not data or not any(data.get(name) for name in ("date_from", "date_to", "account")):
            data = None
        super().__init__(
            data,
            initial={"date_from": self.default_from, "date_to": self.default_to},
            auto_id="dashboard-%s",
        )
        account_field = self.fields["account"]
        assert isinstance(account_field, forms.TypedChoiceField)
        account_field.choices = [("", "All accounts")] + [
            (account.id, f"{account.name} ({account.platform_label}, {account.currency_code})") for account in accounts
        ]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        date_from, date_to = cleaned.get("date_from"), cleaned.get("date_to")
        if date_from and date_to:
            if date_from > date_to:
                self.add_error("date_to", "The end date is before the start date.")
            elif (date_to - date_from).days + 1 > MAX_DAYS:
                self.add_error("date_from", f"Choose at most {MAX_DAYS} days.")
        return cleaned

    def filters(self) -> DashboardFilters:
        if self.is_bound and self.is_valid():
            data = self.cleaned_data
            return DashboardFilters(data["date_from"], data["date_to"], data["account"])
        return DashboardFilters(self.default_from, self.default_to, None)
