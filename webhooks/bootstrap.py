"""Start-up seeding: the Make.com/Zapier source and lead-form keys from the environment."""

from webhooks.services import webhook_source_seed_from_settings


def run(*, stdout) -> None:
    sources = webhook_source_seed_from_settings()
    if sources:
        stdout.write(f"Webhook sources up to date: {', '.join(source.name for source in sources)}.")
    else:
        stdout.write("No WEBHOOK_SECRET / GOOGLE_LEAD_FORM_KEY set: add webhook sources in admin.")
