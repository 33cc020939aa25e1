from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "connections"
    verbose_name = "Connections"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import pre_save

        from campaigns.models import AdAccount
        from connections import services
        from platforms.registry import add_auth_failure_handler

        # Credentials refused anywhere (a sync, a budget push, an upload) flag their connection.
        add_auth_failure_handler(services.connection_credentials_refused)
        # An account created without a connection (discovery with the environment's credentials,
        # a factory in a test) belongs to the environment connection of its platform.
        pre_save.connect(
            services.account_attach_default_connection, sender=AdAccount, dispatch_uid="connections-attach"
        )
