"""Start-up seeding: the Make.com/Zapier source and lead-form keys from the environment."""

from django.conf import settings

from webhooks.services import webhook_source_seed_from_settings


def run(*, stdout) -> None:
    sources = webhook_source_seed_from_settings()
    if sources:
        stdout.write(f"Webhook sources created from the environment: {', '.join(source.name for source in sources)}.")
    elif not (settings.WEBHOOK_SECRET or settings.GOOGLE_LEAD_FORM_KEY):
        stdout.write("No WEBHOOK_SECRET / GOOGLE_LEAD_FORM_KEY set: add webhook sources in admin.")
    else:
        # The environment seeds a source only once; its secret is admin's from then on.
        stdout.write("Webhook sources already exist: their secrets are managed in admin.")
