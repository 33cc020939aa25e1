"""Start-up seeding: the Make.com/Zapier source and lead-form keys from the environment, and on a
fresh install a default route (every lead to the operators by email)."""

from django.conf import settings
from django.contrib.auth import get_user_model

from webhooks.services import routing_default_ensure, webhook_source_seed_from_settings


def run(*, stdout) -> None:
    operators = get_user_model().objects.filter(is_superuser=True, is_active=True).exclude(email="")
    recipients = [*getattr(settings, "ALERT_EMAIL_RECIPIENTS", []), *operators.values_list("email", flat=True)]
    rule = routing_default_ensure(recipients=recipients)
    if rule is not None:
        stdout.write(
            f"Leads are routed by default to the operators by email ({', '.join(recipients) or 'no address yet'}); "
            "edit the rule and destination in admin."
        )
    sources = webhook_source_seed_from_settings()
    if sources:
        stdout.write(f"Webhook sources created from the environment: {', '.join(source.name for source in sources)}.")
    elif not (settings.WEBHOOK_SECRET or settings.GOOGLE_LEAD_FORM_KEY):
        stdout.write("No WEBHOOK_SECRET / GOOGLE_LEAD_FORM_KEY set: add webhook sources in admin.")
    else:
        # The environment seeds a source only once; its secret is admin's from then on.
        stdout.write("Webhook sources already exist: their secrets are managed in admin.")
