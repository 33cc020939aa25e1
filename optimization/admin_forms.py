"""Forms of the operator screens that change things on the platforms: budgets, status, the optimizer.

Amounts are typed in currency units and cleaned to integer micros; the guards themselves are
the service's (optimization.changes), whose refusals come back onto the field they concern.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from campaigns.models import AdAccount
from optimization.changes import SETTABLE_STATUSES

MICROS_PER_UNIT = 1_000_000


class UnitsAsMicrosField(forms.DecimalField):
    """Shows and takes an amount in currency units; cleans to integer micros for the model."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_digits", 18)
        kwargs.setdefault("decimal_places", 6)
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return (Decimal(value) / MICROS_PER_UNIT).normalize()
        return value

    def clean(self, value):
        amount = super().clean(value)
        if amount is None:
            return None
        return int(amount * MICROS_PER_UNIT)


class ServiceErrorsMixin:
    """Puts a service refusal (one field, one sentence) on the form field it concerns."""

    FIELD_OF_ERROR: dict[str, str] = {}
    # What the form it is mixed into provides.
    fields: dict[str, forms.Field]
    add_error: Callable[[str | None, Any], None]

    def add_service_error(self, error: ValidationError) -> None:
        for name, errors in error.message_dict.items():
            field = self.FIELD_OF_ERROR.get(name)
            self.add_error(field if field in self.fields else None, errors)


class BudgetChangeForm(ServiceErrorsMixin, forms.Form):
    """A new daily or lifetime budget (whichever the object has), with the confirmations the
    guards may ask for; the template shows each confirmation only when it is needed."""

    daily_budget = UnitsAsMicrosField(label="New daily budget")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Required; kept in the audit trail.")
    confirm_large_change = forms.BooleanField(
        required=False, label="Confirm a change beyond ±50% of the current budget"
    )
    confirm_shared_budget = forms.BooleanField(
        required=False, label="Confirm changing a budget shared with other campaigns"
    )

    FIELD_OF_ERROR = {
        "daily_budget_micros": "daily_budget",
        "lifetime_budget_micros": "lifetime_budget",
        "reason": "reason",
        "confirm_large_change": "confirm_large_change",
        "confirm_shared_budget": "confirm_shared_budget",
    }

    def __init__(self, *args, period: str = "daily", currency: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        # The field is named after the budget it changes: daily_budget or lifetime_budget.
        self.budget_field = f"{period}_budget"
        field = self.fields.pop("daily_budget")
        field.label = f"New {period} budget"
        example = "12500" if currency in ("JPY", "KRW") else "125.50"
        field.help_text = f"In {currency or 'the account currency'}, e.g. {example}."
        self.fields = {self.budget_field: field, **self.fields}

    @property
    def budget_micros(self) -> int | None:
        return self.cleaned_data.get(self.budget_field)


class StatusChangeForm(ServiceErrorsMixin, forms.Form):
    status = forms.ChoiceField(choices=[(s, s.capitalize()) for s in SETTABLE_STATUSES], widget=forms.HiddenInput)
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), help_text="Required; kept in the audit trail.")

    FIELD_OF_ERROR = {"reason": "reason", "status": "status"}


class BulkStatusForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required; kept in the audit trail of every change record.",
    )


class OptimizerRunForm(forms.Form):
    """The account to run the optimizer on: only those the user holds the advertiser role on."""

    account = forms.ModelChoiceField(queryset=AdAccount.objects.none(), empty_label=None)

    def __init__(self, *args, accounts=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["account"].queryset = accounts if accounts is not None else AdAccount.objects.none()
