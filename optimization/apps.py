from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_save


class OptimizationConfig(AppConfig):
    name = "optimization"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from campaigns.models import SyncRun
        from optimization.services import platform_call_record
        from platforms.observe import add_listener

        add_listener(platform_call_record)
        # The overspend alert is evaluated after each sync; campaigns cannot know about this
        # app, so it listens for finished runs instead of being called.
        post_save.connect(_after_sync_run_saved, sender=SyncRun, dispatch_uid="optimization.after_sync")


def _after_sync_run_saved(sender, instance, **kwargs) -> None:
    if instance.status != "succeeded":
        return
    from optimization import enqueue

    account_id = instance.account_id
    transaction.on_commit(lambda: enqueue.send_quietly(enqueue.EVALUATE_ACCOUNT_ALERTS, account_id))
