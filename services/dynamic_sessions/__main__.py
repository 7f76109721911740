from services.code_execution.config import zygote_enabled
from services.common.service import run
from services.dynamic_sessions import create_app

if __name__ == "__main__":
    # Forked by the zygote, the interpreters cost the server one start; otherwise it starts each itself.
    run("dynamic_sessions", create_app, starts_processes=not zygote_enabled())
