"""The routing rule editor: conditions as rows of field, operator and value, or as JSON.

A rule's conditions are stored as they always were (``RoutingRule.conditions``, a list of
``{"field", "op", "value"}``, evaluated by ``webhooks.services``); this only changes how a person
writes them. The widget renders one row per condition plus empty ones (a small script adds more;
without it, "Save and continue editing" gives fresh empty rows) and, folded below, the same
conditions as JSON. Whichever of the two the person changed is saved; a row left as it was keeps
its stored condition exactly, so rules saved before the editor existed come back unchanged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django import forms
from django.core.exceptions import ValidationError

from webhooks import services
from webhooks.models import RoutingRule

# Words a person reads in the operator menu; the stored value stays the short name.
OPERATOR_LABELS = {
    "equals": "is",
    "not_equals": "is not",
    "contains": "contains",
    "in": "is one of (comma-separated)",
    "regex": "matches the pattern (regular expression)",
    "gt": "is more than",
    "gte": "is at least",
    "lt": "is less than",
    "lte": "is at most",
    "exists": "is filled in (value: yes or no)",
}
NUMBER_OPERATORS = ("gt", "gte", "lt", "lte")
YES = ("", "yes", "true", "1", "y")
NO = ("no", "false", "0", "n")
EMPTY_ROWS = 2  # blank rows under the conditions, to add one without a script
MAX_ROWS = 100  # more is a forged form, not a rule


def operator_choices() -> list[tuple[str, str]]:
    return [(op, OPERATOR_LABELS.get(op, op)) for op in services.CONDITION_OPERATORS]


def field_suggestions() -> list[str]:
    return [*services.LEAD_FIELDS, "answers."]


@dataclass(frozen=True)
class ConditionRow:
    """One row as typed: field, operator, value (text), and the remove tick."""

    index: int
    field: str = ""
    op: str = ""
    value: str = ""
    remove: bool = False

    @property
    def is_blank(self) -> bool:
        return not (self.field.strip() or self.op or self.value.strip())

    def same_text(self, other: ConditionRow) -> bool:
        return (self.field.strip(), self.op, self.value.strip()) == (other.field.strip(), other.op, other.value.strip())


@dataclass(frozen=True)
class ConditionsInput:
    """What the editor posted: the rows (None when the post had none, e.g. JSON only) and the JSON box."""

    rows: tuple[ConditionRow, ...] | None
    json_text: str | None
    errors: tuple[str, ...] = field(default=())


def _value_text(op: str, value: Any) -> str:
    """A stored value as the Value box shows it."""
    if value is None:
        return ""
    if isinstance(value, bool):
        if op == "exists":
            return "yes" if value else "no"
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ", ".join(_value_text(op, item) for item in value)
    if isinstance(value, (dict,)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def rows_from_conditions(conditions: Any) -> list[ConditionRow]:
    """The rows that show stored conditions (anything that is not a condition shows as an empty row)."""
    if not isinstance(conditions, list):
        return []
    rows = []
    for index, condition in enumerate(conditions):
        if not isinstance(condition, dict):
            rows.append(ConditionRow(index))
            continue
        op = str(condition.get("op", "equals"))
        rows.append(ConditionRow(index, str(condition.get("field", "")), op, _value_text(op, condition.get("value"))))
    return rows


def _number(text: str) -> int | float | None:
    try:
        number = Decimal(text.replace(",", "").replace("_", "").strip())
    except InvalidOperation:
        return None
    if not number.is_finite():
        return None
    return int(number) if number == number.to_integral_value() else float(number)


def _condition_from_row(row: ConditionRow, number: int) -> dict[str, Any]:
    """One row as a stored condition, or a ValidationError saying how to fix it."""
    name, op, text = row.field.strip(), row.op, row.value.strip()
    where = f"Condition {number}"
    if not name:
        raise ValidationError(
            f"{where}: name the field to test, a lead field such as email or phone_country, "
            "or a custom answer as answers.<question id>."
        )
    if not op:
        raise ValidationError(f"{where}: choose an operator for “{name}”.")
    if op not in services.CONDITION_OPERATORS:
        raise ValidationError(f"{where}: “{op}” is not an operator; choose one from the list.")
    label = OPERATOR_LABELS.get(op, op)
    if op == "exists":
        if text.lower() in YES:
            return {"field": name, "op": op, "value": True}
        if text.lower() in NO:
            return {"field": name, "op": op, "value": False}
        raise ValidationError(f"{where}: “{label}” takes yes (the lead has a value) or no (it has none), not “{text}”.")
    if not text:
        raise ValidationError(
            f"{where}: “{name} {label}” needs a value in the Value box "
            "(or choose “is filled in” to test only that it has one)."
        )
    if op in NUMBER_OPERATORS:
        value = _number(text)
        if value is None:
            raise ValidationError(f"{where}: “{label}” compares numbers; write a number such as 5000, not “{text}”.")
        return {"field": name, "op": op, "value": value}
    if op == "in":
        options = [part.strip() for part in text.split(",") if part.strip()]
        if not options:
            raise ValidationError(f"{where}: list the values it may be, separated by commas (e.g. US, CA).")
        return {"field": name, "op": op, "value": options}
    if op == "regex":
        try:
            re.compile(text)
        except re.error as exc:
            raise ValidationError(
                f"{where}: “{text}” is not a valid regular expression ({exc}); fix it, or choose "
                "“contains” to match plain text."
            ) from None
    return {"field": name, "op": op, "value": text}


def conditions_from_rows(rows: tuple[ConditionRow, ...], *, initial: Any) -> list[dict[str, Any]]:
    """The conditions the rows say; a row left as it was shown keeps its stored condition exactly."""
    originals = initial if isinstance(initial, list) else []
    shown = {row.index: row for row in rows_from_conditions(originals)}
    conditions, errors = [], []
    # Numbered as the editor shows them (removed and empty rows keep their numbers).
    for number, row in enumerate(rows, start=1):
        if row.remove or row.is_blank:
            continue
        before = shown.get(row.index)
        if before is not None and before.same_text(row) and isinstance(originals[row.index], dict):
            conditions.append(originals[row.index])
            continue
        try:
            conditions.append(_condition_from_row(row, number))
        except ValidationError as exc:
            errors.extend(exc.messages)
    if errors:
        raise ValidationError(errors)
    return conditions


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def conditions_from_json(text: str) -> Any:
    """The JSON box parsed (blank: no conditions), or a ValidationError with where it went wrong."""
    if not text.strip():
        return []
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"The JSON box does not hold valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno}). "
            'Fix it (a list such as [{"field": "answers.budget", "op": "gte", "value": 5000}]), '
            "or put back what it showed and edit the rows instead."
        ) from None
    except ValueError as exc:
        raise ValidationError(f"The JSON box: {exc}; write the number itself, or quote it as text.") from None


def conditions_resolve(given: ConditionsInput, *, initial: Any) -> list[dict[str, Any]]:
    """What to store: the JSON when only it changed (or when the post had no rows), else the rows."""
    initial = initial if isinstance(initial, list) else []
    used_json = given.rows is None
    if given.rows is None:
        conditions = conditions_from_json(given.json_text or "")
    else:
        json_given = given.json_text is not None and given.json_text.strip() != ""
        json_changed = False
        from_json: Any = None
        if json_given:
            try:
                from_json = conditions_from_json(given.json_text or "")
                json_changed = from_json != initial
            except ValidationError:
                json_changed = True
        rows_error: ValidationError | None = None
        try:
            from_rows = conditions_from_rows(given.rows, initial=initial)
        except ValidationError as exc:
            rows_error, from_rows = exc, None
        rows_changed = rows_error is not None or from_rows != initial
        if json_changed and rows_changed and from_rows != from_json:
            raise ValidationError(
                "The conditions were changed both in the rows and in the JSON box. Keep one: "
                "undo the changes in the rows, or put back what the JSON box showed."
            )
        used_json = json_changed
        if json_changed:
            conditions = conditions_from_json(given.json_text or "")
        elif rows_error is not None:
            raise rows_error
        else:
            conditions = from_rows
    try:
        services.routing_conditions_validate(conditions)
    except ValidationError as exc:
        where = "In the JSON box: " if used_json else ""
        raise ValidationError([f"{where}{message}" for message in exc.messages]) from None
    return conditions


def json_edited(given: ConditionsInput, *, initial: Any) -> bool:
    """The JSON box says something else than the stored conditions (or only JSON was posted)."""
    if given.rows is None:
        return True
    if given.json_text is None or not given.json_text.strip():
        return False
    try:
        return conditions_from_json(given.json_text) != initial
    except ValidationError:
        return True


def _parsed_or_empty(given: ConditionsInput) -> Any:
    try:
        return conditions_from_json(given.json_text or "")
    except ValidationError:
        return []


class RoutingConditionsWidget(forms.Widget):
    """Rows of field / operator / value (with a remove tick), and the same conditions as JSON."""

    template_name = "webhooks/widgets/routing_conditions.html"
    # Set by the form when the JSON box was edited: it is shown unfolded, as the person left it.
    json_open = False

    class Media:
        js = ("adsplatform/routing_conditions.js",)

    def value_from_datadict(self, data, files, name) -> ConditionsInput:
        json_text = data.get(name)
        total = data.get(f"{name}-TOTAL")
        if total is None:
            return ConditionsInput(rows=None, json_text=json_text)
        try:
            count = min(max(int(total), 0), MAX_ROWS)
        except (TypeError, ValueError):
            count = 0
        rows = tuple(
            ConditionRow(
                index=index,
                field=str(data.get(f"{name}-{index}-field", "")),
                op=str(data.get(f"{name}-{index}-op", "")),
                value=str(data.get(f"{name}-{index}-value", "")),
                remove=bool(data.get(f"{name}-{index}-remove")),
            )
            for index in range(count)
        )
        return ConditionsInput(rows=rows, json_text=json_text)

    def value_omitted_from_data(self, data, files, name) -> bool:
        return name not in data and f"{name}-TOTAL" not in data

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        json_open = self.json_open
        if isinstance(value, ConditionsInput):
            rows = list(value.rows) if value.rows is not None else rows_from_conditions(_parsed_or_empty(value))
            json_text = value.json_text or ""
            json_open = json_open or value.rows is None
        else:
            if isinstance(value, str):  # a JSON string from elsewhere (e.g. the form's initial)
                try:
                    value = json.loads(value)
                except ValueError:
                    value = []
            rows = rows_from_conditions(value)
            json_text = json.dumps(value if isinstance(value, list) else [], indent=2, ensure_ascii=False)
        next_index = max((row.index for row in rows), default=-1) + 1
        rows += [ConditionRow(next_index + n) for n in range(EMPTY_ROWS)]
        context["widget"].update(
            {
                "rows": [
                    {"row": row, "number": number, "prefix": f"{name}-{row.index}"}
                    for number, row in enumerate(rows, start=1)
                ],
                "total": next_index + EMPTY_ROWS,
                "operators": operator_choices(),
                "fields": field_suggestions(),
                "json_text": json_text,
                "json_open": json_open,
            }
        )
        return context


class RoutingConditionsField(forms.Field):
    """Hands the posted rows and JSON to the form, which resolves them against the stored conditions."""

    widget = RoutingConditionsWidget

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value):
        if isinstance(value, ConditionsInput) or value is None:
            return value
        return ConditionsInput(rows=None, json_text=value if isinstance(value, str) else json.dumps(value))

    def validate(self, value) -> None:
        pass  # no conditions is a valid rule (the default route); the form checks the rest

    def has_changed(self, initial, data) -> bool:
        if not isinstance(data, ConditionsInput):
            return False
        try:
            return conditions_resolve(data, initial=initial) != (initial or [])
        except ValidationError:
            return True


class RoutingRuleForm(forms.ModelForm):
    conditions = RoutingConditionsField(
        label="Conditions",
        help_text=(
            "Every condition must hold for the rule to match; no condition matches every lead (the default "
            "route, keep it last). Fields: "
            + ", ".join(services.LEAD_FIELDS)
            # Admin renders help text as HTML: no angle brackets here.
            + ", or a custom answer as answers. and its question id (answers.budget). Tick Remove to drop a "
            "condition."
        ),
    )

    class Meta:
        model = RoutingRule
        fields = ("name", "position", "is_active", "conditions", "priority", "destinations")

    def clean_conditions(self) -> list[dict[str, Any]]:
        given = self.cleaned_data.get("conditions")
        initial = self.instance.conditions if self.instance.pk else []
        if given is None:
            return initial
        self.fields["conditions"].widget.json_open = json_edited(given, initial=initial)
        return conditions_resolve(given, initial=initial)
