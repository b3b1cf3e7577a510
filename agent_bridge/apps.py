from django.apps import AppConfig


class AgentBridgeConfig(AppConfig):
    name = "agent_bridge"
    verbose_name = "Agent bridge"

    def ready(self) -> None:
        from agent_bridge import receivers  # noqa: F401  (connects the signal receivers)
