from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        from runs import graph_checks  # noqa: F401 - registers the graphs' system check
        from runs.after_run import on_run_ended
        from runs.engine import run_ended

        run_ended.connect(on_run_ended, dispatch_uid="runs.after_run")
